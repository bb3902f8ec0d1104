"""RSS of the gateway across 100,000 requests, and a sampling profile of a worker under load.

Starts the shared fake upstream and `cliffguard serve --config bench/cliffguard-bench.yaml` (2 workers),
drives them with the shared load generator in batches (alternating plain and stream, c=32), prints the
RSS of every gateway process after each batch, then profiles one worker with py-spy for 10 s and
prints the functions with the most samples (self and cumulative).
  .venv/bin/python bench/soak_profile.py [--requests 100000] [--batch 10000] [--realistic] [--profile-seconds 0]
--realistic: bench/cliffguard-realistic.yaml and 20,000 distinct prompts from 5,000 users (as
`bench/run_overhead.sh --realistic`); --profile-seconds 0 skips the profile (py-spy must be allowed to
attach: ptrace).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from _support import HARNESS, REPO, wait

PY = sys.executable



def rss_mb(root: psutil.Process) -> list[float]:
    procs = [root, *root.children(recursive=True)]
    return [round(p.memory_info().rss / 2**20, 1) for p in procs if "redis" not in p.name()]


PROMPTS = Path("/tmp/cliffguard-bench-prompts.jsonl")


def load(mode: str, n: int, realistic: bool) -> dict[str, object]:
    traffic = ["--prompts", str(PROMPTS), "--users", "5000"] if realistic else []
    out = subprocess.run([PY, str(HARNESS / "load.py"), "--url", "http://127.0.0.1:9000", "--model", "fake-model",
                          "--mode", mode, "-c", "32", "-n", str(n), "-d", "120", "--json", *traffic],
                         capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def profile(pid: int, seconds: int) -> None:
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    raw = Path(tempfile.mkdtemp()) / "stacks.txt"
    loader = subprocess.Popen([PY, str(HARNESS / "load.py"), "--url", "http://127.0.0.1:9000", "--model",
                               "fake-model", "--mode", "stream", "-c", "32", "-n", "10000000", "-d",
                               str(seconds + 3)], stdout=subprocess.DEVNULL)
    subprocess.run([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(raw),
                    "--nonblocking"], check=True, capture_output=True)
    loader.wait()
    self_t: collections.Counter[str] = collections.Counter()
    cum: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1] for f in stack.split(";")]
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            cum[f] += n
    print(f"\nprofile of worker {pid}: {total} samples over {seconds}s of c=32 streaming load")
    print("top self time:")
    for f, n in self_t.most_common(15):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("top cumulative (gateway code):")
    for f, n in [(f, n) for f, n in cum.most_common(200) if any(p in f for p in
                 ("proxy.py", "sse.py", "upstream.py", "openai_request.py", "split.py", "metrics.py"))][:12]:
        print(f"  {100 * n / total:5.1f}%  {f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--profile-seconds", type=int, default=10)
    ap.add_argument("--realistic", action="store_true")
    a = ap.parse_args()
    if a.realistic and not PROMPTS.exists():
        PROMPTS.write_text(subprocess.run([PY, str(HARNESS / "make_prompts.py"), "-n", "20000"], capture_output=True,
                                          text=True, check=True).stdout)
    for d in ("/tmp/cliffguard-bench", "/tmp/cliffguard-bench-realistic"):
        shutil.rmtree(d, ignore_errors=True)
    up = subprocess.Popen([PY, str(HARNESS / "upstream.py"), "--port", "18000"], stdout=subprocess.DEVNULL,
                          start_new_session=True)
    config = str(REPO / ("bench/cliffguard-realistic.yaml" if a.realistic else "bench/cliffguard-bench.yaml"))
    gw = subprocess.Popen([str(Path(PY).parent / "cliffguard"), "serve", "--config", config, "--log-level", "warning"],
                          stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait("http://127.0.0.1:18000/health")
        wait("http://127.0.0.1:9000/healthz")
        root = psutil.Process(gw.pid)
        print(f"gateway RSS (MB per process: parent, workers) at start: {rss_mb(root)}")
        done = 0
        while done < a.requests:
            mode = "plain" if (done // a.batch) % 2 == 0 else "stream"
            r = load(mode, a.batch, a.realistic)
            done += a.batch
            print(f"after {done:>7,} requests ({mode:6s} {r['rps']:>7} req/s, errors {r['errors']}): "
                  f"RSS {rss_mb(root)}")
        workers = [p for p in root.children(recursive=True) if "redis" not in p.name()]
        if a.profile_seconds > 0:
            profile(workers[-1].pid, a.profile_seconds)
    finally:
        for p in (gw, up):
            os.killpg(p.pid, signal.SIGINT)
            p.wait(timeout=30)


if __name__ == "__main__":
    main()
