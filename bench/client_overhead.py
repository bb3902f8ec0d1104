"""Client-side cost of one backend round trip, httpx vs aiohttp vs the gateway's own client
(`gateway/proxy/http_client.py`), against the shared fake upstream.

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

from gateway.proxy.http_client import Origin, Pool, PoolLimits

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


async def with_own_client(url: str, n: int, stream: bool) -> float:
    pool = Pool(Origin.of(url), PoolLimits(max_connections=100))
    path = url.split("/", 3)[3]
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    t = time.perf_counter()
    for _ in range(n):
        r = await pool.request("POST", f"/{path}", headers, body(stream))
        async for _chunk in r.chunks():
            pass
        r.release()
    us = (time.perf_counter() - t) / n * 1e6
    pool.close()
    return us


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:18000")
    ap.add_argument("-n", type=int, default=3000)
    a = ap.parse_args()
    url = f"{a.url}/v1/chat/completions"
    clients = (("httpx", with_httpx), ("aiohttp", with_aiohttp), ("own", with_own_client))
    for name, fn in clients:
        for stream in (False, True):
            cpu = time.process_time()
            us = await fn(url, a.n, stream)
            cpu_us = (time.process_time() - cpu) / a.n * 1e6
            print(f"{name:8s} {'stream' if stream else 'plain ':6s} {us:7.0f} us per sequential round trip, "
                  f"{cpu_us:5.0f} us of the client's CPU")


if __name__ == "__main__":
    uvloop.run(main())
