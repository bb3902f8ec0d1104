"""Shared by the bench scripts: where the shared harness lives, and waiting for a server to answer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
HARNESS = Path(os.environ.get("BENCH_HARNESS", REPO.parent / "shared" / "bench"))


def wait(url: str, tries: int = 100) -> None:
    for _ in range(tries):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")
