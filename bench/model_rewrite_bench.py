"""CPU cost of answering with the alias (gateway/proxy/model_name.py), per answer and per stream event, on
the shapes vLLM writes (docs/benchmarks.md, "Protocol compatibility").

    .venv/bin/python bench/model_rewrite_bench.py
"""

from __future__ import annotations

import timeit

import orjson

from gateway.proxy.model_name import ModelRewrite


def chunk(i: int) -> bytes:
    event = {"id": "chatcmpl-94d9bdfb610c280d", "object": "chat.completion.chunk", "created": 1795322159,
             "model": "base",
             "choices": [{"index": 0, "delta": {"content": f" token{i}"}, "logprobs": None, "finish_reason": None}]}
    return b"data: " + orjson.dumps(event) + b"\n\n"


def main() -> None:
    rw = ModelRewrite("base", "support-bot")
    answer = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "base",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 200},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 30, "completion_tokens": 200, "total_tokens": 230}})
    one, sixteen = chunk(0), b"".join(chunk(i) for i in range(16))
    completed = b"event: response.completed\ndata: " + orjson.dumps({"type": "response.completed", "response": {
        "id": "resp_1", "instructions": "You are a helpful assistant. " * 20, "metadata": None, "model": "base",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "word " * 200}]}]}}) + b"\n\n"
    exact = ModelRewrite("base", "support-bot", exact=True)
    cases = [("JSON answer, 1.1 KB (first match)", lambda: rw.body(answer)),
             ("one chat chunk (one event per read)", lambda: rw.events(one)),
             ("16 chat chunks in one read", lambda: rw.events(sixteen)),
             ("Responses `response.completed`, 1.9 KB", lambda: rw.events(completed)),
             ("same, parsed (metadata holds the served name)", lambda: exact.events(completed))]
    print("| case | us per call |\n|---|---|")
    for name, fn in cases:
        n = 20_000
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
        print(f"| {name} | {best:.2f} |")


if __name__ == "__main__":
    main()
