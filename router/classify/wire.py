"""The frames between a gateway worker and the host's classifier process (`gateway/processes/
classifier_host.py`), over a unix socket. Pure.

A frame is a 4-byte big-endian length and a JSON document. A worker sends `[id, [part, ...]]` per
request; the host answers with `[[id, category, confidence, layer], ...]`, one frame per batch and
worker. JSON through orjson (`bench/classifier_frames.py`: about 1 us to encode a request, against 7
with the standard library's json), not pickle: a frame never becomes code, whoever wrote it.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.classify.layers import Label

_HEAD = 4
MAX_FRAME = 16 << 20  # a request's parts are bounded by the gateway's body limit; this bounds a bad peer


class FrameError(ValueError):
    """The peer sent something that is not a frame: the connection is closed."""


def frame(obj: Any) -> bytes:
    data = orjson.dumps(obj)
    return len(data).to_bytes(_HEAD, "big") + data


def request_frame(rid: int, parts: tuple[str, ...]) -> bytes:
    return frame([rid, parts])


def reply_frame(replies: list[tuple[int, Label]]) -> bytes:
    return frame([[rid, lab.category, lab.confidence, lab.layer] for rid, lab in replies])


def parse_request(obj: Any) -> tuple[int, tuple[str, ...]]:
    if (not isinstance(obj, list) or len(obj) != 2 or not isinstance(obj[0], int) or not isinstance(obj[1], list)
            or not all(isinstance(p, str) for p in obj[1])):
        raise FrameError("a request frame is [id, [part, ...]]")
    return obj[0], tuple(obj[1])


def parse_replies(obj: Any) -> list[tuple[int, Label]]:
    try:
        return [(int(rid), Label(str(cat), float(conf), str(layer))) for rid, cat, conf, layer in obj]
    except (TypeError, ValueError) as e:
        raise FrameError("a reply frame is [[id, category, confidence, layer], ...]") from e


class FrameReader:
    """Whole frames out of a byte stream that arrives in arbitrary pieces."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out, pos = [], 0
        while len(buf) - pos >= _HEAD:
            size = int.from_bytes(buf[pos:pos + _HEAD], "big")
            if size > MAX_FRAME:
                raise FrameError(f"frame of {size} bytes (at most {MAX_FRAME})")
            end = pos + _HEAD + size
            if len(buf) < end:
                break
            try:
                out.append(orjson.loads(memoryview(buf)[pos + _HEAD:end]))
            except orjson.JSONDecodeError as e:
                raise FrameError("a frame is not JSON") from e
            pos = end
        del buf[:pos]
        return out
