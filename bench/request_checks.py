"""What the input hardening costs a request: the JSON value checks in `parse` (nesting depth, integers
beyond 64 bits) and the request-body deadline around ASGI `receive`, each against the same work without it.

  python bench/request_checks.py [--repeat 15]

Prints a table: body shape, size, parse without the checks, with them, the difference, and what counting
the brackets in the raw bytes would cost (an alternative pre-filter); then the deadline's cost per
request, and what a timer per request would cost instead. Each number is the best of `--repeat` timeit
runs: the machine is shared, and the minimum is the run least disturbed by other work.
"""

from __future__ import annotations

import argparse
import asyncio
import timeit
from typing import Any

import orjson
import uvloop

from gateway.body_deadline import BodyDeadlines
from gateway.proxy import request
from gateway.proxy.request import CHAT, parse

SYSTEM = "You are the ACME help desk. Answer briefly and politely. " * 4
TOOL = {"type": "function", "function": {"name": "lookup_order", "description": "Find an order by id.",
                                         "parameters": {"type": "object", "properties": {
                                             "order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
                                             "required": ["order_id"]}}}


def chat(turns: int, words: int = 30, **extra: Any) -> bytes:
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * words} for i in range(turns)]
    return orjson.dumps({"model": "support-bot", "messages": messages, "user": "user-42", "temperature": 0.7,
                         "max_tokens": 256, "stream": True, **extra})


SHAPES: dict[str, bytes] = {
    "chat, 1 turn": chat(1),
    "chat, 1 turn, 4 tools, seed": chat(1, tools=[TOOL] * 4, seed=1234),
    "chat, 100 turns": chat(100),
    "chat, 1 turn of 200k words": chat(1, words=200_000),
    "chat, content parts x20": orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "word " * 20}] * 20}]}),
    "float >= 2**64 (exact re-parse)": chat(1, seed=1.9e19),
    "nested 128 levels (the limit)": chat(1)[:-1] + b',"x":' + b"[" * 127 + b"]" * 127 + b"}",
}


def parse_costs(repeat: int) -> None:
    """With and without the checks, interleaved run by run, so both meet the same load."""
    checks = request._check_values
    print(f"{'body':34} {'bytes':>9} {'without us':>11} {'with us':>9} {'checks us':>10} {'count [{ us':>12}")
    for name, raw in SHAPES.items():
        number = max(20, min(20_000, 20_000_000 // len(raw)))
        timer = timeit.Timer(lambda raw=raw: parse(raw, CHAT))  # type: ignore[misc]
        with_checks, without = [], []
        for _ in range(repeat):
            with_checks.append(timer.timeit(number))
            request._check_values = lambda raw, body: None
            try:
                without.append(timer.timeit(number))
            finally:
                request._check_values = checks
        w, wo = min(with_checks) / number * 1e6, min(without) / number * 1e6
        # the rejected alternative: count the brackets first, to walk only bodies that could be deep
        count = min(timeit.repeat(lambda raw=raw: raw.count(b"[") + raw.count(b"{"),  # type: ignore[misc]
                                  number=number, repeat=repeat)) / number * 1e6
        print(f"{name:34} {len(raw):9} {wo:11.2f} {w:9.2f} {w - wo:10.2f} {count:12.2f}")


async def deadline_cost(repeat: int, number: int = 200_000) -> None:
    message = {"type": "http.request", "body": b"{}", "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def plain() -> None:
        for _ in range(number):
            await receive()

    deadlines = BodyDeadlines(30.0)
    deadlines.start()

    async def wrapped() -> None:  # a deadline per request, as the app makes one, and its first receive
        for _ in range(number):
            await deadlines.wrap(receive)()

    async def timer_each() -> None:  # the rejected alternative: a timer per request
        for _ in range(number):
            async with asyncio.timeout(30.0):
                await receive()

    loop = asyncio.get_running_loop()
    cases = {"receive()": plain, "deadlines.wrap(receive)()": wrapped, "asyncio.timeout: receive()": timer_each}
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):  # interleaved, like the parse costs
        for name, fn in cases.items():
            t = loop.time()
            await fn()
            runs[name].append((loop.time() - t) / number * 1e6)
    times = {name: min(r) for name, r in runs.items()}
    await deadlines.stop()
    for name, us in times.items():
        print(f"{name:28} {us:7.3f} us per request")
    print(f"{'deadline cost':28} {times['deadlines.wrap(receive)()'] - times['receive()']:7.3f} us per request")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    parse_costs(args.repeat)
    print()
    uvloop.run(deadline_cost(args.repeat))


if __name__ == "__main__":
    main()
