"""The worker supervisor of `cliffguard serve`: uvicorn's, told to forget the workers that are gone.

In prometheus_client's multiprocess mode every process keeps its own files, and `/metrics` merges
them. A worker that dies (killed, crashed, out of memory) or is retired (SIGHUP, SIGTTOU) leaves its
files behind: its `live*` gauges would keep counting (`in_flight_requests` stuck above zero, a dead
process still reported as the controller's leader). The supervisor is where a death becomes known,
so after each of its checks the live gauges of every process that is no longer one of its workers
are removed (`mark_process_dead`). Counters and histograms stay: their totals must not go down.
"""

from __future__ import annotations

import re
from pathlib import Path
from socket import socket

from prometheus_client import multiprocess
from uvicorn import Config
from uvicorn.supervisors import Multiprocess

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def forget_gone_processes(directory: Path, keep: set[int]) -> None:
    """Remove the live-gauge files of every process not in `keep`."""
    pids = {int(m.group(1)) for f in directory.iterdir() if (m := _LIVE_GAUGE_FILE.match(f.name))}
    for pid in pids - keep:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


class Supervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket], metrics_dir: Path) -> None:
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir

    def keep_subprocess_alive(self) -> None:
        # runs every half second, after the signals (SIGHUP and SIGTTOU retire workers) were handled
        super().keep_subprocess_alive()  # replaces dead workers
        self.forget_gone()

    def forget_gone(self) -> None:
        forget_gone_processes(self.metrics_dir, {p.pid for p in self.processes if p.pid is not None})
