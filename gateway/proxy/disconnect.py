"""Noticing that the client went away while its request is served, so the upstream request is dropped too
(a backend stops generating when its connection closes).

The gateway's HTTP protocol (gateway/processes/http_protocol.py) offers a scope key, ON_DISCONNECT, where the
request puts a callback that the protocol calls when the connection is lost: nothing runs per request until
then. Under another server, a task per request waits for `http.disconnect` on `receive()` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

ON_DISCONNECT = "cliffguard.on_disconnect"  # scope key: present (None) where the server calls what is put there


class DisconnectWatcher:
    """Cancels the request's task when the client goes away, until `stop()`."""

    __slots__ = ("fired", "_request", "_done", "_task")

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive, request: asyncio.Task[Any]) -> None:
        self.fired = False
        self._done = False
        self._request = request
        self._task: asyncio.Task[None] | None = None
        if ON_DISCONNECT in scope:
            scope[ON_DISCONNECT] = self._gone
        else:
            self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        msg = await receive()
        # uvicorn answers receive() with http.disconnect once the response is complete, too
        if msg["type"] == "http.disconnect":
            self._gone()

    def _gone(self) -> None:
        if not self._done:
            self._done = self.fired = True
            self._request.cancel()

    def stop(self) -> None:
        if not self._done:
            self._done = True
            if self._task is not None:
                self._task.cancel()
