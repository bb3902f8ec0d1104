"""Counting in memory and writing to Redis in the background: the lifecycle shared by the writers that keep
Redis off the request path (guard counters, the request log for feedback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

log = logging.getLogger("cliffguard.flush")


class PeriodicFlush:
    """Calls `flush()` every `flush_s` in a task; a failed flush keeps its batch (the subclass's job) and is
    retried at the next tick; `stop()` flushes once more."""

    flush_s: float
    _task: asyncio.Task[None] | None = None

    async def flush(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cliffguard-{type(self).__name__}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except (RedisError, OSError) as e:
                log.debug("%s not flushed: %s", type(self).__name__, e)
