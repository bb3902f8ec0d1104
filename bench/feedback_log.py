"""The proxy's cost of remembering answers for feedback (gateway/feedback.py): the append on the request
path, the background write per request (one script per 250 ms batch) against a real Redis, and the Redis
memory each remembered request holds for `feedback.window_s` (measured as used_memory before and after).

    .venv/bin/python bench/feedback_log.py [redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit

import redis.asyncio as aioredis

from gateway.config import FeedbackConfig
from gateway.feedback import Answered, RequestLog

N = 20_000


async def main(url: str) -> None:
    client = aioredis.from_url(url)
    log = RequestLog(client, "bench-feedback", FeedbackConfig())
    body = {"model": "bot", "user": "u", "messages": [{"role": "user", "content": "a question of some length " * 20}]}
    a = Answered("bot", "v2@1", "v2", "candidate", "coding")
    per = min(timeit.repeat(lambda: log.record("0123456789abcdef01234567", a, body), number=N, repeat=5)) / N
    log._pending.clear()
    memory0 = (await client.info("memory"))["used_memory"]
    for i in range(N):
        log.record(f"{i:024x}", a, {**body, "user": f"u{i}"})
    t0, c0 = time.perf_counter(), time.process_time()
    while log._pending:
        batch = log._pending[:2000]  # a 250 ms batch at 8,000 requests/s
        log._pending = log._pending[2000:]
        rest, log._pending = log._pending, batch
        await log.flush()
        log._pending = rest
    flush, cpu = (time.perf_counter() - t0) / N, (time.process_time() - c0) / N
    print(f"append on the request path: {per * 1e9:.0f} ns per request")
    print(f"background write (one script per 1,000 of a 2,000 batch): {flush * 1e6:.1f} us wall, "
          f"{cpu * 1e6:.1f} us of the gateway's CPU per request")
    held = ((await client.info("memory"))["used_memory"] - memory0) / N
    print(f"Redis memory per remembered request (the answer and its conversation digest): {held:.0f} bytes, held "
          f"for feedback.window_s (at 1,000 requests/s and a day: {held * 1000 * 86400 / 2**30:.1f} GiB)")
    keys = [k async for k in client.scan_iter("bench-feedback:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await client.delete(*keys[i:i + 1000])
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
