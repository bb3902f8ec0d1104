"""A deadline on receiving the request body (`timeouts.request_body`): a client that declares 500 bytes and
sends 14 gets a 408 when it passes, instead of holding a connection and a task for as long as it likes.

There is no timer per request. `BodyDeadlines` (one per worker) keeps the requests that are waiting for
body bytes right now and sweeps them a few times per timeout, cancelling the wait of any that is past its
deadline. A request whose body is already there (the common case) pays two set operations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.errors import GatewayError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyDeadlines:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.waiting: set[BodyDeadline] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._sweep(), name="cliffguard-body-deadlines")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wrap(self, receive: Receive) -> BodyDeadline:
        """`receive` for one request, its deadline counted from now."""
        assert self._loop is not None, "start() first"
        return BodyDeadline(receive, self, self._loop.time() + self.timeout_s)

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def _sweep(self) -> None:
        interval = min(1.0, self.timeout_s / 4)  # a request is cut at most a quarter timeout late
        while True:
            await asyncio.sleep(interval)
            now = self.now()
            for late in [d for d in self.waiting if d.deadline <= now]:
                late.expire()


class BodyDeadline:
    """`receive` with the deadline until the request body is complete, then `receive` as it is (from then on
    it only reports the disconnect)."""

    __slots__ = ("_receive", "_owner", "deadline", "_waiter", "_done", "expired")

    def __init__(self, receive: Receive, owner: BodyDeadlines, deadline: float) -> None:
        self._receive = receive
        self._owner = owner
        self.deadline = deadline
        self._waiter: asyncio.Task[Any] | None = None
        self._done = False
        self.expired = False

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        if self.expired or self._owner.now() >= self.deadline:
            self.expired = True
            raise request_timeout()
        self._waiter = asyncio.current_task()
        self._owner.waiting.add(self)
        try:
            msg = await self._receive()
        except asyncio.CancelledError:
            if not self.expired or self._waiter is None:
                raise
            self._waiter.uncancel()
            raise request_timeout() from None
        finally:
            self._owner.waiting.discard(self)
            self._waiter = None
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            self._done = True
        return msg

    def expire(self) -> None:
        self.expired = True
        if self._waiter is not None:
            self._waiter.cancel()


def request_timeout() -> GatewayError:
    return GatewayError(408, "The request body did not arrive in time.", "invalid_request_error", None,
                        "request_timeout")
