"""Server-sent-events relay logic: pure, no I/O.

Upstream bytes are forwarded as they arrive, cut only at event boundaries (an incomplete trailing
event waits for its end). Events are looked into only when needed: until the first content (TTFT), and
those that carry a usage object (token counts; the usage-only chunk the gateway asked for on the
client's behalf is dropped).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_BOUNDARY = re.compile(rb"\r?\n\r?\n")
_CONTENT = re.compile(rb'"(?:content|text|reasoning_content)":"[^"]|"tool_calls":\[\{')
_USAGE = b'"usage":{'
_DONE = b"data: [DONE]"


class StreamScanner:
    __slots__ = ("strip_usage", "_pending", "usage", "saw_content", "done", "events")

    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self._pending = b""
        self.usage: dict[str, Any] | None = None
        self.saw_content = False
        self.done = False
        self.events = 0

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        """Returns (bytes to forward now, whether the first content arrived in this chunk)."""
        data = self._pending + chunk if self._pending else chunk
        end = _last_boundary(data)
        if end == 0:
            self._pending = data
            return b"", False
        complete, self._pending = data[:end], data[end:]
        first = False
        if not self.saw_content and _CONTENT.search(complete):
            self.saw_content = first = True
        if _USAGE in complete:
            complete = self._take_usage(complete)
        if _DONE in complete:
            self.done = True
        return complete, first

    def flush(self) -> bytes:
        """Whatever is left when the upstream closed (an unterminated last event)."""
        rest, self._pending = self._pending, b""
        return rest

    def _take_usage(self, complete: bytes) -> bytes:
        """Read (and maybe drop) the events holding a usage object; only those are looked into."""
        pos = 0
        while (i := complete.find(_USAGE, pos)) >= 0:
            start = _boundary_before(complete, i)
            m = _BOUNDARY.search(complete, i)
            end = m.end() if m else len(complete)
            payload = _data_payload(complete[start:end])
            if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                self.usage = payload["usage"]
                if self.strip_usage and not payload.get("choices"):
                    complete = complete[:start] + complete[end:]
                    pos = start
                    continue
            pos = end
        return complete


def _last_boundary(data: bytes) -> int:
    i = data.rfind(b"\n\n")
    j = data.rfind(b"\r\n\r\n")
    return max(i + 2 if i >= 0 else 0, j + 4 if j >= 0 else 0)


def _boundary_before(data: bytes, i: int) -> int:
    """Start of the event that contains position i."""
    a = data.rfind(b"\n\n", 0, i)
    b = data.rfind(b"\r\n\r\n", 0, i)
    return max(a + 2 if a >= 0 else 0, b + 4 if b >= 0 else 0)


def _data_payload(event: bytes) -> Any:
    lines = [ln[5:].lstrip() for ln in event.splitlines() if ln.startswith(b"data:")]
    try:
        return orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return None
