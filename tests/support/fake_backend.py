"""A scripted OpenAI-compatible backend speaking real HTTP, for failure modes a tiny model cannot show
on cue: refused connections are a closed port; this covers slow heads, 5xx, mid-stream failures, slow
streams, and records whether a request was cancelled by the gateway."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Script:
    model: str = "fake"
    text: str = "hello from the fake backend"
    status: int = 200  # e.g. 500: fail before any byte
    head_delay_s: float = 0.0  # wait before the response head (timeout before first byte)
    chunk_delay_s: float = 0.0  # between stream chunks (slow stream)
    fail_after_chunks: int | None = None  # drop the connection mid-stream
    fail_every: int = 0  # answer 500 to every Nth request (an unreliable candidate)
    chunks: int = 5
    tool_call: tuple[str, str] | None = None  # (name, arguments): answer with a tool call and no text


@dataclass
class Record:
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    cancelled: int = 0
    completed: int = 0


class FakeBackend:
    def __init__(self, name: str = "fake", **script: Any) -> None:
        self.name = name
        self.script = Script(**script)
        self.record = Record()
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
        ])

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": self.script.model, "object": "model"}]})

    async def chat(self, request: Request) -> Response:
        return await self._answer(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._answer(request, chat=False)

    async def _answer(self, request: Request, chat: bool) -> Response:
        body = orjson.loads(await request.body())
        self.record.requests.append(body)
        self.record.headers.append(dict(request.headers))
        s = self.script
        if s.head_delay_s:
            await asyncio.sleep(s.head_delay_s)
        if body.get("model") != s.model:
            return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                           "type": "NotFoundError", "param": "model", "code": 404}}, 404)
        if s.status != 200 or (s.fail_every and len(self.record.requests) % s.fail_every == 0):
            status = s.status if s.status != 200 else 500
            return JSONResponse({"error": {"message": f"scripted {status}", "type": "InternalServerError",
                                           "param": None, "code": status}}, status)
        rid = f"{self.name}-{next(self._ids)}"
        words = [f"{w} " for w in s.text.split()][: s.chunks] or ["x"]
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        if not body.get("stream"):
            self.record.completed += 1
            text = "".join(words)
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if s.tool_call:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call-1", "type": "function", "function": {"name": s.tool_call[0],
                                                                     "arguments": s.tool_call[1]}}]}
            choice = ({"index": 0, "message": message, "finish_reason": "tool_calls" if s.tool_call else "stop"}
                      if chat else {"index": 0, "text": text, "finish_reason": "stop"})
            return JSONResponse({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                 "created": int(time.time()), "model": s.model, "choices": [choice],
                                 "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._stream(rid, words, chat, include_usage, usage),
                                 media_type="text/event-stream")

    async def _stream(self, rid: str, words: list[str], chat: bool, include_usage: bool,
                      usage: dict[str, int]) -> Any:
        s = self.script
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + orjson.dumps({"id": rid, "object": obj, "model": s.model, "choices": choices,
                                             **extra}) + b"\n\n"
        try:
            if chat:
                yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            if chat and s.tool_call:  # the name first, then the arguments in two pieces, as vLLM streams them
                name, args = s.tool_call
                yield event([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call-1", "type": "function",
                                                                     "function": {"name": name, "arguments": ""}}]}}])
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    yield event([{"index": 0, "delta": {"tool_calls": [{"index": 0,
                                                                         "function": {"arguments": piece}}]}}])
                words = []
            for i, w in enumerate(words):
                if s.fail_after_chunks is not None and i >= s.fail_after_chunks:
                    raise ConnectionAbortedError("scripted mid-stream failure")
                if s.chunk_delay_s:
                    await asyncio.sleep(s.chunk_delay_s)
                delta = {"delta": {"content": w}} if chat else {"text": w}
                yield event([{"index": 0, **delta, "finish_reason": None}])
            yield event([{"index": 0, "delta" if chat else "text": {} if chat else "", "finish_reason": "stop"}])
            if include_usage:
                yield event([], usage=usage)
            yield b"data: [DONE]\n\n"
            self.record.completed += 1
        except asyncio.CancelledError:
            self.record.cancelled += 1
            raise
