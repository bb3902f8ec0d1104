"""A scripted OpenAI-compatible backend speaking real HTTP, for failure modes a tiny model cannot show
on cue: refused connections are a closed port; this covers slow heads, 5xx, mid-stream failures, slow
streams, and records whether a request was cancelled by the gateway. It speaks chat, completions and the
Responses API (events shaped as vLLM 0.32 writes them), and vLLM's embeddings, tokenize, detokenize and
version endpoints."""

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
    replies: dict[str, str] = field(default_factory=dict)  # marker in the last message -> the text instead


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
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/detokenize", self.detokenize, methods=["POST"]),
            Route("/version", self.version, methods=["GET"]),
        ])

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": self.script.model, "object": "model", "created": 1700000000, "owned_by": "vllm",
             "root": f"/models/{self.script.model}", "parent": None, "max_model_len": 4096}]})

    async def _recorded(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(await request.body())
        self.record.requests.append(body)
        self.record.headers.append(dict(request.headers))
        return body

    async def embeddings(self, request: Request) -> Response:
        body = await self._recorded(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse({"object": "list", "model": body["model"], "usage": {"prompt_tokens": 3, "total_tokens": 3},
                             "data": [{"object": "embedding", "index": i, "embedding": [0.5, -0.25, float(len(x))]}
                                      for i, x in enumerate(inputs)]})

    async def tokenize(self, request: Request) -> Response:
        body = await self._recorded(request)
        tokens = [ord(c) for c in body.get("prompt", "")]
        return JSONResponse({"count": len(tokens), "max_model_len": 4096, "tokens": tokens, "token_strs": None})

    async def detokenize(self, request: Request) -> Response:
        body = await self._recorded(request)
        return JSONResponse({"prompt": "".join(chr(t) for t in body["tokens"])})

    async def version(self, request: Request) -> Response:
        self.record.headers.append(dict(request.headers))
        return JSONResponse({"version": f"fake-{self.name}"})

    async def chat(self, request: Request) -> Response:
        return await self._answer(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._answer(request, chat=False)

    async def _refusal(self, body: dict[str, Any]) -> Response | None:
        """The scripted head delay, then a 404 for another model or the scripted failure, as vLLM answers."""
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
        return None

    async def _answer(self, request: Request, chat: bool) -> Response:
        body = await self._recorded(request)
        if (refused := await self._refusal(body)) is not None:
            return refused
        s = self.script
        rid = f"{self.name}-{next(self._ids)}"
        last = str((body.get("messages") or [{}])[-1].get("content") if chat else body.get("prompt"))
        text = next((t for marker, t in s.replies.items() if marker in last), s.text)
        words = [f"{w} " for w in text.split()][: s.chunks] or ["x"]
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

    # -- the Responses API ----------------------------------------------------------------------------

    async def responses(self, request: Request) -> Response:
        body = await self._recorded(request)
        if (refused := await self._refusal(body)) is not None:
            return refused
        s = self.script
        rid = f"resp_{self.name}{next(self._ids)}"
        words = [f"{w} " for w in s.text.split()][: s.chunks] or ["x"]
        usage = {"input_tokens": 7, "output_tokens": len(words), "total_tokens": 7 + len(words),
                 "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
        if s.tool_call:
            item: dict[str, Any] = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": s.tool_call[0],
                                    "arguments": s.tool_call[1], "status": "completed"}
        else:
            item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "".join(words), "annotations": []}]}

        def response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
            # vLLM's field order: the echoed instructions and metadata come before the model
            return {"id": rid, "created_at": int(time.time()), "incomplete_details": None,
                    "instructions": body.get("instructions"), "metadata": body.get("metadata"), "model": s.model,
                    "object": "response", "output": output, "status": status, "tools": body.get("tools") or [],
                    "usage": usage, "user": body.get("user")}

        if not body.get("stream"):
            self.record.completed += 1
            return JSONResponse(response("completed", [item], usage))
        return StreamingResponse(self._response_events(item, words, response, usage), media_type="text/event-stream")

    async def _response_events(self, item: dict[str, Any], words: list[str], response: Any,
                               usage: dict[str, Any]) -> Any:
        s = self.script
        seq = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            data = orjson.dumps({**fields, "sequence_number": next(seq), "type": kind})
            return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
        try:
            yield event("response.created", response=response("in_progress", [], None))
            yield event("response.in_progress", response=response("in_progress", [], None))
            if item["type"] == "function_call":
                yield event("response.output_item.added", item={**item, "arguments": "", "status": "in_progress"},
                            output_index=0)
                args = item["arguments"]
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    yield event("response.function_call_arguments.delta", delta=piece, item_id=item["id"],
                                output_index=0)
                yield event("response.function_call_arguments.done", arguments=args, item_id=item["id"],
                            output_index=0)
            else:
                yield event("response.output_item.added", item={**item, "content": [], "status": "in_progress"},
                            output_index=0)
                yield event("response.content_part.added", content_index=0, item_id=item["id"], output_index=0,
                            part={"type": "output_text", "text": "", "annotations": []})
                for i, w in enumerate(words):
                    if s.fail_after_chunks is not None and i >= s.fail_after_chunks:
                        raise ConnectionAbortedError("scripted mid-stream failure")
                    if s.chunk_delay_s:
                        await asyncio.sleep(s.chunk_delay_s)
                    yield event("response.output_text.delta", content_index=0, delta=w, item_id=item["id"],
                                output_index=0, logprobs=[])
                yield event("response.output_text.done", content_index=0, item_id=item["id"], output_index=0,
                            text="".join(words), logprobs=[])
                yield event("response.content_part.done", content_index=0, item_id=item["id"], output_index=0,
                            part=item["content"][0])
            yield event("response.output_item.done", item=item, output_index=0)
            yield event("response.completed", response=response("completed", [item], usage))
            self.record.completed += 1
        except asyncio.CancelledError:
            self.record.cancelled += 1
            raise


def main() -> None:
    """`python -m tests.support.fake_backend --port P ...`: the backend as its own process, so a fault
    injection can kill it with SIGKILL and start it again on the same port."""
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="fake")
    ap.add_argument("--model", default="fake")
    ap.add_argument("--text", default=Script.text)
    ap.add_argument("--chunks", type=int, default=Script.chunks)
    ap.add_argument("--chunk-delay-s", type=float, default=0.0)
    ap.add_argument("--head-delay-s", type=float, default=0.0)
    a = ap.parse_args()
    fb = FakeBackend(a.name, model=a.model, text=a.text, chunks=a.chunks, chunk_delay_s=a.chunk_delay_s,
                     head_delay_s=a.head_delay_s)
    uvicorn.run(fb.app, host="127.0.0.1", port=a.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
