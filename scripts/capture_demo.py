"""Runs `cliffguard demo` in a real terminal (tmux), times it, and renders its last screen to an SVG with
rich: the picture of the demo in the README.

  .venv/bin/python scripts/capture_demo.py [docs/img/demo.svg]
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.text import Text

WIDTH, HEIGHT = 150, 40


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/demo.svg")
    assert shutil.which("tmux"), "tmux is needed (apt-get install tmux)"
    cli = Path(sys.executable).parent / "cliffguard"
    session = f"cg-demo-{uuid.uuid4().hex[:8]}"
    # the shell stays after the demo exits, so its last screen can still be read
    tmux("new-session", "-d", "-s", session, "-x", str(WIDTH), "-y", str(HEIGHT))
    try:
        started = time.monotonic()
        tmux("send-keys", "-t", session, f"clear; {cli} demo; echo DEMO-EXIT=$?", "Enter")
        screen = ""
        while not (done := re.search(r"DEMO-EXIT=(\d+)", screen)):
            time.sleep(0.5)
            screen = tmux("capture-pane", "-t", session, "-p", "-e")
            if time.monotonic() - started > 600:
                raise SystemExit("the demo did not finish within 10 minutes")
        took = time.monotonic() - started
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    status = done.group(1)
    lines = screen.splitlines()
    end = next(i for i, line in enumerate(lines) if re.search(r"DEMO-EXIT=\d", line))
    body = "\n".join(lines[:end]).strip("\n")  # the demo's screen, without the marker and the prompt
    console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True)
    console.print(Text.from_ansi(body))
    out.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(out), title="cliffguard demo")
    print(f"demo exited {status} after {took:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
