"""A gateway worker's classifier when the model runs in the host's classifier process
(`classifier_host.py`): the same `submit` as the thread service (`router/classify/service.py`: cache,
in-flight sharing, never blocking), with the parts sent over a unix socket (`router/classify/wire.py`).

Fail-open: while the process is unreachable (starting, or replaced after a crash) a request is labelled
`unclassified` at once, and the requests in flight when the connection drops are labelled `unclassified`
then. The client reconnects in the background every `retry_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import cast

from gateway.processes.corked import CorkedTransport
from router.classify.layers import Label
from router.classify.service import NO_LABEL, LabelService, Parts
from router.classify.wire import FrameError, FrameReader, parse_replies, request_frame

log = logging.getLogger("cliffguard.classifier")


class RemoteClassifier(LabelService):
    def __init__(self, path: str, *, queue_size: int, cache_size: int, retry_s: float = 0.2) -> None:
        super().__init__(cache_size=cache_size)
        self.path = path
        self.queue_size = queue_size  # requests in flight to the process, at most; past it `unclassified`
        self.retry_s = retry_s
        self._link: _Link | None = None
        self._inflight: dict[int, bytes] = {}  # request id -> the key its label resolves
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._connected: asyncio.Event | None = None

    def start(self) -> None:
        super().start()
        self._connected = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._keep_connected(), name="cliffguard-classifier-link")

    async def wait_connected(self, timeout_s: float) -> bool:
        assert self._connected is not None, "start() first"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self._connected.is_set()

    def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._link:
            self._link.close()

    async def _keep_connected(self) -> None:
        assert self._loop is not None and self._connected is not None
        down_logged = False
        while True:
            try:
                _, link = await self._loop.create_unix_connection(lambda: _Link(self), self.path)
            except OSError as e:
                if not down_logged:
                    log.warning("classifier process unreachable at %s (%s); labelling unclassified until it "
                                "answers", self.path, e)
                    down_logged = True
                await asyncio.sleep(self.retry_s)
                continue
            if down_logged:
                log.info("classifier process reachable again")
                down_logged = False
            self._link = link
            self._connected.set()
            await link.closed
            self._link = None
            self._connected.clear()
            self._fail_inflight()

    def _enqueue(self, key: bytes, parts: Parts) -> bool:
        link = self._link
        if link is None or len(self._inflight) >= self.queue_size:
            return False
        rid = next(self._ids)
        self._inflight[rid] = key
        link.send(request_frame(rid, parts))
        return True

    def _replied(self, replies: list[tuple[int, Label]]) -> None:
        keys, labels = [], []
        for rid, label in replies:
            key = self._inflight.pop(rid, None)
            if key is not None:
                keys.append(key)
                labels.append(label)
        self._resolve(keys, labels)

    def _fail_inflight(self) -> None:
        if self._inflight:
            log.warning("classifier process connection lost with %d requests in flight: labelled unclassified",
                        len(self._inflight))
        keys = list(self._inflight.values())
        self._inflight.clear()
        self._resolve(keys, [NO_LABEL] * len(keys))


class _Link(asyncio.Protocol):
    """One connection to the process. Corked: the frames of all the requests one step of the event loop
    accepted leave in one write."""

    def __init__(self, owner: RemoteClassifier) -> None:
        self._owner = owner
        self._reader = FrameReader()
        self._transport: CorkedTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses
        self._transport = CorkedTransport(cast(asyncio.Transport, transport), asyncio.get_running_loop())

    def data_received(self, data: bytes) -> None:
        try:
            for obj in self._reader.feed(data):
                self._owner._replied(parse_replies(obj))
        except FrameError as e:
            log.error("classifier process sent a bad frame (%s); reconnecting", e)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
