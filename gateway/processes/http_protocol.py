"""The HTTP/1.1 protocol uvicorn runs for the gateway: uvicorn's httptools protocol, with two changes.

- A request the parser cannot read (malformed request line or headers, invalid URL) is answered in
  OpenAI's error format (JSON, 400) instead of uvicorn's plain text, and the connection is closed.
- Upgrades (WebSocket, h2c) are never performed: the gateway serves none, and a WebSocket upgrade would
  hand the request to a stack the app does not answer. Such a request is served as plain HTTP (404, 405
  or the answer itself), and the connection closes after it, because the parser reads nothing after an
  upgrade request.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import error_body

_MALFORMED = error_body("Malformed HTTP request: it could not be parsed.", "invalid_request_error", None,
                        "invalid_http")


class GatewayHttpProtocol(HttpToolsProtocol):
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
