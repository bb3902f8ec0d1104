"""Answers name the alias the client asked for, not the backend's model: a byte-level rewrite. Pure.

The backend writes `"model":"<served name>"` once per JSON answer, and once per SSE event that carries it
(every chat chunk; the Responses API's `response.*` lifecycle events). Only that exact key and value are
replaced, the first one in the body or in each event, without parsing: a `"model":"..."` written inside
a JSON string has escaped quotes and never matches. The one place where the same key and value can occur
before the answer's own is an echoed `metadata` map (the Responses API echoes it first); requests whose
metadata holds `"model": <served name>` are rewritten by parsing instead (`exact`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

_EVENTS = re.compile(rb"(\r?\n\r?\n)")  # splits a read into its events, keeping the boundaries


class ModelRewrite:
    __slots__ = ("_pattern", "_replacement", "served", "alias", "exact")

    def __init__(self, served: str, alias: str, exact: bool = False) -> None:
        self.served = served
        self.alias = alias
        self.exact = exact
        self._pattern, self._replacement = _compiled(served, alias)

    @classmethod
    def for_request(cls, served: str, alias: str, body: Mapping[str, Any]) -> ModelRewrite | None:
        """None when there is nothing to rewrite (the backend serves the alias's own name)."""
        if served == alias:
            return None
        meta = body.get("metadata")
        return cls(served, alias, exact=isinstance(meta, dict) and meta.get("model") == served)

    def body(self, data: bytes) -> bytes:
        """A whole JSON answer: the first `"model"` written with the served name."""
        if self.exact:
            return _exact_json(data, self.served, self.alias) or data
        return self._pattern.sub(self._replacement, data, count=1)

    def events(self, data: bytes) -> bytes:
        """Complete SSE events: the first occurrence in each event."""
        if self.exact:
            return self._exact_events(data)
        if data.count(b'"model"') <= 1:  # the usual read: one event, or events without a model
            return self._pattern.sub(self._replacement, data, count=1)
        pattern, replacement = self._pattern, self._replacement
        if b"\r" not in data:  # bytes.split is far cheaper than the regex that also knows CRLF boundaries
            return b"\n\n".join(pattern.sub(replacement, event, count=1) for event in data.split(b"\n\n"))
        return b"".join(pattern.sub(replacement, part, count=1) for part in _EVENTS.split(data))

    def _exact_events(self, data: bytes) -> bytes:
        out = []
        for line in data.splitlines(keepends=True):
            if line.startswith(b"data:") and self._pattern.search(line):
                end = len(line) - len(line.rstrip(b"\r\n"))
                new = _exact_json(line[5:len(line) - end], self.served, self.alias)
                if new is not None:
                    line = b"data: " + new + line[len(line) - end:]
            out.append(line)
        return b"".join(out)


@lru_cache(maxsize=256)
def _compiled(served: str, alias: str) -> tuple[re.Pattern[bytes], bytes]:
    # orjson writes the names exactly as they appear in JSON (escapes included)
    return (re.compile(rb'"model"\s*:\s*' + re.escape(orjson.dumps(served))),
            b'"model":' + orjson.dumps(alias))


def _exact_json(raw: bytes, served: str, alias: str) -> bytes | None:
    """The answer's own `model` (top level, or in the `response` of a Responses event), by parsing."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    target = obj["response"] if isinstance(obj.get("response"), dict) else obj
    if target.get("model") != served:
        return None
    target["model"] = alias
    return orjson.dumps(obj)
