"""The request path's side of sampling: an O(1) push into a bounded in-memory buffer, flushed to the
Redis Stream by a background task. If Redis is unreachable, samples wait in the buffer and go out when it
returns; past the buffer's size the oldest are dropped and counted. A request never waits on any of it."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from redis.exceptions import RedisError

from judges.queue import JudgeQueue

log = logging.getLogger("cliffguard.sampling")


class SampleSink:
    def __init__(self, queue: JudgeQueue, *, buffer_size: int, max_per_second: float, max_per_day: int,
                 on_flush: Callable[[int, int], None] | None = None, on_overflow: Callable[[], None] | None = None,
                 batch: int = 256) -> None:
        self.queue = queue
        self.buffer: deque[bytes] = deque()
        self.buffer_size = buffer_size
        self.max_per_second = max_per_second
        self.max_per_day = max_per_day
        self.batch = batch
        self._on_flush = on_flush
        self._on_overflow = on_overflow
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def push(self, payload: bytes) -> None:
        if len(self.buffer) >= self.buffer_size:
            self.buffer.popleft()
            if self._on_overflow:
                self._on_overflow()
        self.buffer.append(payload)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cliffguard-sample-sink")

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, drain_timeout_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    async def flush_once(self) -> None:
        while self.buffer:
            chunk = [self.buffer[i] for i in range(min(self.batch, len(self.buffer)))]
            appended, refused = await self.queue.append(chunk, self.max_per_second, self.max_per_day)
            for _ in chunk:  # only now: a failed append keeps them for the next try
                self.buffer.popleft()
            if self._on_flush:
                self._on_flush(appended, refused)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self.buffer:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.flush_once()
                backoff = 0.1
            except (RedisError, OSError) as e:
                if self._stopping:
                    log.warning("dropping %d unsent samples at shutdown: %s", len(self.buffer), e)
                    return
                log.warning("sample append failed (%s); %d samples buffered", e, len(self.buffer))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
