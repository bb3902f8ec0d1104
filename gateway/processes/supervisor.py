"""The worker supervisor of `cliffguard serve`: uvicorn's, told to forget the workers that are gone.

In prometheus_client's multiprocess mode every process keeps its own files, and `/metrics` merges
them. A worker that dies (killed, crashed, out of memory) or is retired (SIGHUP, SIGTTOU) leaves its
files behind: its `live*` gauges would keep counting (`in_flight_requests` stuck above zero, a dead
process still reported as the controller's leader). The supervisor is where a death becomes known,
so after each of its checks the live gauges of every process that is no longer one of its workers
are removed (`mark_process_dead`). Counters and histograms stay: their totals must not go down.

Each worker slot listens on a socket of its own, all bound to the gateway's address with SO_REUSEPORT,
and the kernel spreads new connections over them. On one shared socket the worker that wakes first
accepts every connection waiting (uvloop accepts until none is left), so a client opening its pool of
connections at once had them all on one worker while the other idled (bench/cpu_per_request.py showed
418 us of CPU per request on one worker and 8 us on the other). The parent holds the sockets: a worker
that dies is replaced on the same socket, and the connections queued on it wait for the replacement
instead of being dropped (the same at startup: each socket listens before its worker starts).
"""

from __future__ import annotations

import logging
import re
import socket
import sys
from pathlib import Path

from prometheus_client import multiprocess
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

from gateway.processes.classifier_host import ClassifierHost

log = logging.getLogger("uvicorn.error")

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def forget_gone_processes(directory: Path, keep: set[int]) -> None:
    """Remove the live-gauge files of every process not in `keep`."""
    pids = {int(m.group(1)) for f in directory.iterdir() if (m := _LIVE_GAUGE_FILE.match(f.name))}
    for pid in pids - keep:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _listener(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        log.error("cannot listen on %s:%d: %s", host, port, e)
        sys.exit(STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


class SlotSockets:
    """The listening sockets of the worker slots, one each, on one address."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        self.host = host
        self.backlog = backlog
        self.port = port
        if port:  # SO_REUSEPORT alone would let this gateway share the port with one left running there
            _listener(host, port, reuse_port=False).close()

    def open(self) -> socket.socket:
        sock = _listener(self.host, self.port, reuse_port=True)
        self.port = sock.getsockname()[1]  # port 0: the other slots join the port the first one got
        sock.listen(self.backlog)  # from now on its share of connections queues, whatever its worker is doing
        return sock


class Supervisor(Multiprocess):
    def __init__(self, config: Config, metrics_dir: Path, classifier: ClassifierHost | None = None) -> None:
        self.slots = SlotSockets(config.host, config.port, config.backlog)
        super().__init__(config, [self.slots.open() for _ in range(config.workers)])
        self.metrics_dir = metrics_dir
        self.classifier = classifier
        log.info("cliffguard listening on http://%s:%d with %d workers", config.host, self.slots.port,
                 config.workers)

    def _start(self, slot: int) -> Process:
        process = Process(self.config, [self.sockets[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(slot) for slot in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        # runs every half second, after the signals (SIGHUP and SIGTTOU retire workers) were handled
        if self.should_exit.is_set():
            return
        if self.classifier:
            self.classifier.ensure_running()
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or dead already
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # the app cannot start: every restart would fail too
                log.error("worker %s failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            log.info("worker %s died; starting its replacement", process.pid)
            self.processes[slot] = self._start(slot)
        self.forget_gone()

    def restart_all(self) -> None:
        """SIGHUP: each worker's replacement serves on its socket before the old one is retired."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                log.error("worker replacing %s was not ready in time; restart aborted", old.pid)
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def handle_ttin(self) -> None:
        self.sockets.append(self.slots.open())
        self.processes_num += 1
        self.processes.append(self._start(len(self.processes)))

    def handle_ttou(self) -> None:
        if self.processes_num <= 1:
            return
        self.processes_num -= 1
        process = self.processes.pop()
        process.terminate()  # stops accepting, finishes what it holds
        process.join()
        self.sockets.pop().close()  # connections queued on it since are refused: clients retry

    def forget_gone(self) -> None:
        forget_gone_processes(self.metrics_dir, {p.pid for p in self.processes if p.pid is not None})
