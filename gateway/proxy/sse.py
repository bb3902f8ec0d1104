"""Server-sent-events relay logic: pure, no I/O.

Upstream bytes are forwarded as they arrive, cut only at event boundaries (an incomplete trailing
event waits for its end). Events are looked into only when needed: until the first content (TTFT), the
event that ends the stream, and those that carry a usage object (token counts; the usage-only chunk the
gateway asked for on the client's behalf is dropped). The model name is rewritten to the alias at byte
level (`model_name.py`).

Two stream formats: chat and completions (`data: {chunk}` events, usage in a chunk of its own, then
`data: [DONE]`), and the Responses API (`event: response.*` typed events; usage in the terminal
`response.completed` or `response.incomplete` event's `response`; no `[DONE]`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import sse_error_event
from gateway.proxy.model_name import ModelRewrite
from gateway.proxy.request import RESPONSES, OpenAIRequest, usage_added
from gateway.proxy.usage import normalized_usage

_BOUNDARY = re.compile(rb"\r?\n\r?\n")
_USAGE = b'"usage":{'
_SEQUENCE = re.compile(rb'"sequence_number":(\d+)')


@dataclass(frozen=True, slots=True)
class StreamFormat:
    content: re.Pattern[bytes]  # an event that holds the first content (text, reasoning or a tool call)
    done: re.Pattern[bytes]  # the event that ends a complete stream
    usage_in_response: bool  # usage sits in the event's `response` object, not at its top level


CHAT_STREAM = StreamFormat(
    content=re.compile(rb'"(?:content|text|reasoning_content)":"[^"]|"tool_calls":\[\{'),
    done=re.compile(rb"data: \[DONE\]"),
    usage_in_response=False,
)
# event names from openai.types.responses (vLLM 0.32 emits a subset): every `*.delta` is generated output
RESPONSES_STREAM = StreamFormat(
    content=re.compile(rb'"type":"response\.[a-z_.]+\.delta"'),
    done=re.compile(rb'"type":"(?:response\.(?:completed|incomplete|failed)|error)"'),
    usage_in_response=True,
)


class StreamScanner:
    __slots__ = ("strip_usage", "fmt", "rewrite", "_pending", "_usage_event", "_usage", "saw_content", "done",
                 "_last")

    def __init__(self, strip_usage: bool, fmt: StreamFormat = CHAT_STREAM, rewrite: ModelRewrite | None = None
                 ) -> None:
        self.strip_usage = strip_usage
        self.fmt = fmt
        self.rewrite = rewrite
        self._pending = b""
        self._usage_event = b""  # the last event holding usage, parsed only when asked (after the response)
        self._usage: dict[str, Any] | None = None
        self.saw_content = False
        self.done = False
        self._last = b""

    @classmethod
    def of(cls, req: OpenAIRequest, rewrite: ModelRewrite | None) -> StreamScanner:
        return cls(usage_added(req), RESPONSES_STREAM if req.endpoint == RESPONSES else CHAT_STREAM, rewrite)

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        """Returns (bytes to forward now, whether the first content arrived in this chunk)."""
        data = self._pending + chunk if self._pending else chunk
        end = _last_boundary(data)
        if end == 0:
            self._pending = data
            return b"", False
        complete, self._pending = data[:end], data[end:]
        first = False
        if not self.saw_content and self.fmt.content.search(complete):
            self.saw_content = first = True
        if _USAGE in complete:
            complete = self._take_usage(complete)
        if not self.done and self.fmt.done.search(complete):
            self.done = True
        if self.rewrite is not None:
            complete = self.rewrite.events(complete)
        self._last = complete
        return complete, first

    def flush(self) -> bytes:
        """Whatever is left when the upstream closed (an unterminated last event)."""
        rest, self._pending = self._pending, b""
        return rest

    @property
    def usage(self) -> dict[str, Any] | None:
        """Token counts, as `prompt_tokens` and `completion_tokens` whatever the format."""
        if self._usage is None and self._usage_event:
            self._usage = self._usage_of(_data_payload(self._usage_event))
            self._usage_event = b""
        return self._usage

    def error_tail(self, message: str) -> bytes:
        """How a stream that fails after its first byte ends, in the stream's own format."""
        if self.fmt is not RESPONSES_STREAM:
            return sse_error_event(message)
        seq = [int(n) for n in _SEQUENCE.findall(self._last)]
        event = {"type": "error", "code": "upstream_failed", "message": message, "param": None,
                 "sequence_number": seq[-1] + 1 if seq else 0}
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"

    def _usage_of(self, payload: Any) -> dict[str, Any] | None:
        if not isinstance(payload, dict):
            return None
        holder = payload.get("response") if self.fmt.usage_in_response else payload
        usage = holder.get("usage") if isinstance(holder, dict) else None
        return normalized_usage(usage)

    def _take_usage(self, complete: bytes) -> bytes:
        """Keep the events holding a usage object; parse them now only to drop the usage-only chunk the
        gateway asked for (its usage is read then too)."""
        pos = 0
        while (i := complete.find(_USAGE, pos)) >= 0:
            start = _boundary_before(complete, i)
            m = _BOUNDARY.search(complete, i)
            end = m.end() if m else len(complete)
            if not self.strip_usage:
                self._usage_event, self._usage = complete[start:end], None
                pos = end
                continue
            payload = _data_payload(complete[start:end])
            usage = self._usage_of(payload)
            if usage is not None:
                self._usage = usage
                if isinstance(payload, dict) and not payload.get("choices"):
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
