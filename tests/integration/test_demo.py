"""`cliffguard demo`, the newcomer's first command, runs to its automatic rollback; with `--stay` its
console stays up with the admin token it printed, and Ctrl-C leaves nothing running."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _running_in(root: Path) -> list[int]:
    """Processes whose working directory is under `root`: the demo's embedded Redis runs in the demo's
    data dir (under TMPDIR), and daemonizes into a session of its own, so a process group misses it."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cwd").resolve().is_relative_to(root):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_demo_rolls_back_then_stays_up_for_the_console_and_stops_cleanly(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIFFGUARD_")} | {"TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--rps", "120", "--max-seconds", "150",
                             "--stay"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**env, "COLUMNS": "160"}, cwd=tmp_path, start_new_session=True,
                            # as under `nohup demo &`: Ctrl-C must stop it even where SIGINT came in ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            out.append(line)
            if "the gateway stays up" in line:
                break
            assert time.monotonic() < deadline, "".join(out)[-3000:]
        text = "".join(out)
        assert "rolled back" in text and "reasoning" in text, text[-3000:]
        console = re.search(r"console (http://127\.0\.0\.1:\d+)/console \(admin token: (\S+)\)", text)
        assert console, text[-3000:]
        base, token = console.group(1), console.group(2).rstrip(")")
        assert httpx.get(f"{base}/console", timeout=10).status_code == 200
        state = httpx.get(f"{base}/admin/state", headers={"authorization": f"Bearer {token}"}, timeout=10).json()
        assert [a["phase"] for a in state["aliases"]] == ["rolled_back"]
        assert _running_in(tmp)  # its embedded redis-server
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, rest[-3000:]
        assert "Traceback" not in text + rest
        time.sleep(0.5)
        assert _running_in(tmp) == [], "the demo left processes behind"
        assert list(tmp.iterdir()) == [], "the demo left files behind"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _running_in(tmp):
            os.kill(pid, signal.SIGKILL)
