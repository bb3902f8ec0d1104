"""The HTTP/1.1 protocol uvicorn runs for the gateway: uvicorn's httptools protocol, with four changes.

- A request the parser cannot read (malformed request line or headers, invalid URL) is answered in
  OpenAI's error format (JSON, 400) instead of uvicorn's plain text, and the connection is closed.
- Upgrades (WebSocket, h2c) are never performed: the gateway serves none, and a WebSocket upgrade would
  hand the request to a stack the app does not answer. Such a request is served as plain HTTP (404, 405
  or the answer itself), and the connection closes after it, because the parser reads nothing after an
  upgrade request.
- A request can leave a callback in its scope (`ON_DISCONNECT`) that is called if the client goes away
  before its response is complete: the proxy drops the upstream request then, without a task per request
  waiting for `http.disconnect`.
- Writes to the client are corked until the end of the event loop's current step: uvicorn writes a
  response's head and its body separately, and each write is a system call; corked, a whole answer
  (and stream events that arrive together) leaves in one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import error_body
from gateway.processes.corked import CorkedTransport
from gateway.proxy.disconnect import ON_DISCONNECT

_MALFORMED = error_body("Malformed HTTP request: it could not be parsed.", "invalid_request_error", None,
                        "invalid_http")


class GatewayHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        # where the request may leave a callback (gateway/proxy/disconnect.py)
        cast(dict[str, Any], self.scope)[ON_DISCONNECT] = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:
            gone: Callable[[], None] | None = cast(dict[str, Any], cycle.scope).get(ON_DISCONNECT)
            if gone is not None:
                gone()

    def send_400_response(self, msg: str) -> None:
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\n", b"content-length: ", str(len(_MALFORMED)).encode(),
                 b"\r\nconnection: close\r\n\r\n", _MALFORMED]
        self.transport.write(b"".join(head))
        self.transport.close()

    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _unsupported_upgrade_warning(self) -> None:  # uvicorn's warning would blame a missing library
        if self.cycle is not None:
            self.cycle.keep_alive = False
