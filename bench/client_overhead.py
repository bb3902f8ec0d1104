"""Client-side cost of one backend round trip, httpx vs aiohttp, against the shared fake upstream.

Why this exists: it decided the gateway's backend client. Start the upstream first:
  python ../shared/bench/upstream.py --port 18000
  python bench/client_overhead.py [--url http://127.0.0.1:18000] [-n 3000]
"""

from __future__ import annotations

import argparse
import json
import time

import aiohttp
import httpx
import uvloop

HEADERS = {"content-type": "application/json"}


def body(stream: bool) -> bytes:
    return json.dumps({"model": "fake-model", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                      ).encode()


async def with_httpx(url: str, n: int, stream: bool) -> float:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as c:
        t = time.perf_counter()
        for _ in range(n):
            r = await c.send(c.build_request("POST", url, content=body(stream), headers=HEADERS), stream=True)
            async for _chunk in r.aiter_raw():
                pass
            await r.aclose()
        return (time.perf_counter() - t) / n * 1e6


async def with_aiohttp(url: str, n: int, stream: bool) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
        t = time.perf_counter()
        for _ in range(n):
            async with s.post(url, data=body(stream), headers=HEADERS) as r:
                async for _chunk in r.content.iter_any():
                    pass
        return (time.perf_counter() - t) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:18000")
    ap.add_argument("-n", type=int, default=3000)
    a = ap.parse_args()
    url = f"{a.url}/v1/chat/completions"
    for name, fn in (("httpx", with_httpx), ("aiohttp", with_aiohttp)):
        for stream in (False, True):
            us = await fn(url, a.n, stream)
            print(f"{name:8s} {'stream' if stream else 'plain ':6s} {us:7.0f} us per sequential round trip")


if __name__ == "__main__":
    uvloop.run(main())
