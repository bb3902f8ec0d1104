"""Each process's in-memory copy of the rollout state, kept fresh by polling the revision counter.

Routing reads `LiveState.snapshot` (no I/O on the request path). A change made anywhere bumps the
revision; every process sees it within `refresh_s` and reloads. If Redis is unreachable the last
snapshot stays in force; if Redis comes back empty (restarted without persistence) the last snapshot
is written back, so a rollback done earlier is not silently undone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from redis.exceptions import RedisError

from router.state import RoutingSnapshot
from router.store import StateStore

log = logging.getLogger("cliffguard.state")


class LiveState:
    def __init__(
        self,
        store: StateStore,
        refresh_s: float = 0.2,
        on_change: Callable[[RoutingSnapshot], None] | None = None,
        on_redis_status: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.snapshot = RoutingSnapshot()
        self.loaded = False
        self.redis_ok = False
        self._on_change = on_change
        self._on_redis_status = on_redis_status
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # the poller and the admin endpoints both refresh: one at a time, so that a load that started
        # earlier (an older state) is never applied after a newer one
        self._refreshing = asyncio.Lock()

    async def start(self, seed: RoutingSnapshot | None = None) -> None:
        """Load the state once (seeding an empty Redis), then keep it fresh in the background."""
        self._seed = seed
        try:
            await self.refresh()
        except (RedisError, OSError) as e:
            log.warning("redis unreachable at startup (%s); serving with the configured state", e)
            if seed is not None:
                self._apply(seed)
            self._set_redis(False)
        self._task = asyncio.create_task(self._loop(), name="cliffguard-state-refresh")

    async def stop(self) -> None:
        # a flag as well as cancel(): redis-py may turn a cancellation that lands mid-command into a
        # ConnectionError, which the loop would otherwise survive
        self._stopping = True
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self) -> None:
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        rev = await self.store.revision()
        if rev is None:
            # Empty Redis: restore what we know (last snapshot, else the configured seed).
            restore = self.snapshot if self.loaded else self._seed
            if restore is not None:
                await self.store.seed(restore, actor=f"gateway:{os.getpid()}")
            rev = await self.store.revision()
        if not self.loaded or rev != self.snapshot.revision:
            self._apply(await self.store.load())
        self._set_redis(True)

    def _apply(self, snap: RoutingSnapshot) -> None:
        self.snapshot = snap
        self.loaded = True
        if self._on_change:
            self._on_change(snap)

    def _set_redis(self, ok: bool) -> None:
        if ok != self.redis_ok:
            log.log(logging.INFO if ok else logging.WARNING, "redis %s", "reachable" if ok else "UNREACHABLE")
        self.redis_ok = ok
        if self._on_redis_status:
            self._on_redis_status(ok)

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except (RedisError, OSError) as e:
                if self.redis_ok:
                    log.warning("state refresh failed: %s", e)
                self._set_redis(False)
            except Exception:  # never let the refresher die: routing would freeze silently
                log.exception("state refresh crashed; retrying")
