"""A fast OpenAI-compatible judge for benchmarks: answers every chat request with a fixed verdict.
  python bench/fast_judge.py --port 18300"""

from __future__ import annotations

import argparse

import orjson
import uvicorn

VERDICT = "Both fine; A is clearer. [[A]]"
BODY = orjson.dumps({"id": "j", "object": "chat.completion", "model": "judge",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": VERDICT},
                                  "finish_reason": "stop"}]})


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18300)
    a = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=a.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)
