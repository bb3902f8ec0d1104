"""The proxy's disconnect watcher, under the gateway's protocol (a callback in the scope) and under any other
ASGI server (a task waiting for `http.disconnect`)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.proxy.disconnect import ON_DISCONNECT, DisconnectWatcher


async def _serve(scope: dict[str, Any], receive: Any, gone_after_s: float | None) -> tuple[bool, bool]:
    """A request that waits a second for its backend; returns (cancelled, watcher fired)."""
    watcher: DisconnectWatcher | None = None

    async def request() -> None:
        nonlocal watcher
        watcher = DisconnectWatcher(scope, receive, asyncio.current_task())  # type: ignore[arg-type]
        try:
            await asyncio.sleep(1.0)
        finally:
            watcher.stop()

    task = asyncio.create_task(request())
    if gone_after_s is not None:
        await asyncio.sleep(gone_after_s)
        if ON_DISCONNECT in scope:
            scope[ON_DISCONNECT]()  # what GatewayHttpProtocol.connection_lost does
    try:
        await task
    except asyncio.CancelledError:
        assert watcher is not None
        return True, watcher.fired
    assert watcher is not None
    return False, watcher.fired


def _receive(disconnect_after_s: float | None):
    async def receive() -> dict[str, Any]:
        if disconnect_after_s is None:
            await asyncio.Event().wait()
        await asyncio.sleep(disconnect_after_s or 0)
        return {"type": "http.disconnect"}
    return receive


async def test_the_protocols_callback_cancels_the_request_and_no_task_waits_on_receive():
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"type": "http.disconnect"}

    assert await _serve({ON_DISCONNECT: None}, receive, gone_after_s=0.05) == (True, True)
    assert calls == 0


async def test_without_the_protocols_key_a_task_waits_for_the_disconnect():
    assert await _serve({}, _receive(0.05), gone_after_s=None) == (True, True)


async def test_a_client_that_stays_does_not_cancel_and_a_stopped_watcher_ignores_a_late_disconnect():
    assert await _serve({}, _receive(None), gone_after_s=None) == (False, False)
    scope: dict[str, Any] = {ON_DISCONNECT: None}
    assert await _serve(scope, _receive(None), gone_after_s=None) == (False, False)
    gone = scope[ON_DISCONNECT]
    gone()  # the connection closes after the response: nothing to cancel, nothing counted
    assert gone.__self__.fired is False
