"""The host's classifier process: with more than one worker, `cliffguard serve` runs the model once, here,
for all of them.

Why a process: in a worker, the model's thread and the event loop share the GIL, and on new prompts the
thread took 28% of the workers' samples and handed the GIL back and forth with the loop several times per
batch, which cost CPU and tail latency on every request (docs/benchmarks.md, issue 15 round 10). Here it
has a core's share to itself, the workers' requests are batched together (larger batches cost less per
prompt: the per-batch numpy work is shared), and the model's memory is held once.

The process serves frames (`router/classify/wire.py`) on a unix socket in a private temporary directory
(mode 0700). A batch starts `batch_wait_ms` after its first request arrived, or at once when
`batch_size` are waiting; while it runs, new requests wait in the socket buffers and form the next one.
The workers' side (`classifier_link.py`) fails open: while this process is down they label
`unclassified` and never wait for it.

`ClassifierHost` is the parent's handle: it starts the process before the workers, replaces it when it
dies (the supervisor's check, every half second), and stops it after the workers have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

from gateway.config import ClassifierConfig
from router.classify.layers import Label
from router.classify.service import Model, Parts, classify_batch
from router.classify.wire import FrameError, FrameReader, parse_request, reply_frame

log = logging.getLogger("cliffguard.classifier")
parent_log = logging.getLogger("uvicorn.error")  # the parent's handle logs with the supervisor

SOCKET_ENV = "CLIFFGUARD_CLASSIFIER_SOCKET"  # set by `serve` for its workers: where the process listens
READY_TIMEOUT_S = 300.0  # loading a fitted model takes seconds; a contextual encoder on a slow disk more


class Batcher:
    """Requests from every connection, classified in batches on this process's event loop."""

    def __init__(self, model: Model, *, min_confidence: float, batch_size: int, wait_s: float,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.model = model
        self.min_confidence = min_confidence
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.on_batch = on_batch
        self.waiting: deque[tuple[Peer, int, Parts, float]] = deque()  # and when it arrived
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None

    def add(self, peer: Peer, rid: int, parts: Parts) -> None:
        loop = asyncio.get_running_loop()
        self.waiting.append((peer, rid, parts, loop.time()))
        if len(self.waiting) == self.batch_size:
            self._schedule(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._run)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """The next batch: at once when a full one waits, else when its oldest request has waited wait_s."""
        if self._timer is not None:
            self._timer.cancel()
        if len(self.waiting) >= self.batch_size:
            self._timer = loop.call_soon(self._run)
        elif self.waiting:
            self._timer = loop.call_at(self.waiting[0][3] + self.wait_s, self._run)
        else:
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        batch = [self.waiting.popleft() for _ in range(min(self.batch_size, len(self.waiting)))]
        labels, elapsed = classify_batch(self.model, [parts for _, _, parts, _ in batch], self.min_confidence)
        if self.on_batch:
            self.on_batch(len(batch), elapsed)
        replies: dict[Peer, list[tuple[int, Label]]] = {}
        for (peer, rid, _, _), label in zip(batch, labels, strict=True):
            replies.setdefault(peer, []).append((rid, label))
        for peer, items in replies.items():
            peer.send(reply_frame(items))
        self._schedule(asyncio.get_running_loop())


class Peer(asyncio.Protocol):
    """One worker's connection."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        try:
            for obj in self._reader.feed(data):
                rid, parts = parse_request(obj)
                self._batcher.add(self, rid, parts)
        except FrameError as e:
            log.error("bad frame from a worker (%s); closing its connection", e)
            self.close()

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve_model(model: Model, cfg: ClassifierConfig, path: str, parent: int | None = None,
                      on_batch: Callable[[int, float], None] | None = None) -> None:
    """Serves `model` on the unix socket `path` until cancelled, or until `parent` is no longer this
    process's parent (it was killed: nobody would stop this process otherwise)."""
    batcher = Batcher(model, min_confidence=cfg.min_confidence, batch_size=cfg.batch_size,
                      wait_s=cfg.batch_wait_ms / 1000, on_batch=on_batch)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a predecessor that was killed
    server = await asyncio.get_running_loop().create_unix_server(lambda: Peer(batcher), path)
    async with server:
        while parent is None or os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.error("the gateway's parent process is gone; the classifier process exits")


def _main(cfg: ClassifierConfig, path: str, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the group: the parent stops it last
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:     classifier process: %(message)s")
    import uvloop

    from gateway.classification import load_model, observe_batch

    _, model = load_model(cfg)
    uvloop.run(serve_model(model.classify, cfg, path, parent, observe_batch))


def _accepting(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


class ClassifierHost:
    """The parent's handle on the classifier process."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        self.cfg = cfg
        self.dir = Path(tempfile.mkdtemp(prefix="cliffguard-"))  # 0700: only this user reaches the socket
        self.path = str(self.dir / "classifier.sock")
        self._proc: BaseProcess | None = None

    def _spawn(self) -> BaseProcess:
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_main, args=(self.cfg, self.path, os.getpid()), name="cliffguard-classifier")
        proc.start()
        return proc

    def start(self) -> None:
        """Starts the process and waits until it accepts connections (the workers start after it)."""
        self._proc = self._spawn()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _accepting(self.path):
            if not self._proc.is_alive():
                raise SystemExit(f"the classifier process failed to start (exit code {self._proc.exitcode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"the classifier process did not listen within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        parent_log.info("classifier process %d ready on %s", self._proc.pid, self.path)

    def ensure_running(self) -> None:
        """Replaces a dead process without waiting for it: the workers reconnect when it listens."""
        if self._proc is None or self._proc.is_alive():
            return
        self._proc.join()
        parent_log.warning("classifier process %s died (exit code %s); starting its replacement", self._proc.pid,
                    self._proc.exitcode)
        self._proc = self._spawn()

    def stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        shutil.rmtree(self.dir, ignore_errors=True)
