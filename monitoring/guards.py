"""Operational guard data: per rollout and version, requests, errors, empty answers and a TTFT histogram.

Gateways count in memory on the request path (a dict increment) and flush to Redis every second in the
background (`GuardCounters`); the controller turns the sums into rates and a p95 (`readings`). Sums are
added with HINCRBY, so any number of replicas contribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from redis.exceptions import RedisError

from monitoring.decision import GuardReading

log = logging.getLogger("cliffguard.guards")
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))
TTL_S = 7 * 86400


def key(prefix: str, alias: str, rollout_id: str) -> str:
    return f"{prefix}:guards:{alias}:{rollout_id}"


class GuardCounters:
    def __init__(self, redis: Any, prefix: str, flush_s: float = 1.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.flush_s = flush_s
        self._pending: Counter[tuple[str, str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    def record(self, alias: str, rollout_id: str, version: str, *, error: bool, empty: bool,
               ttft_s: float | None) -> None:
        k = key(self.prefix, alias, rollout_id)
        self._pending[(k, version, "requests")] += 1
        if error:
            self._pending[(k, version, "errors")] += 1
        if empty:
            self._pending[(k, version, "empty")] += 1
        if ttft_s is not None:
            bucket = next(i for i, b in enumerate(TTFT_BUCKETS) if ttft_s <= b)
            self._pending[(k, version, f"ttft{bucket}")] += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cliffguard-guard-counters")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, Counter()
        pipe = self.redis.pipeline(transaction=False)
        for (k, version, field), n in batch.items():
            pipe.hincrby(k, f"{version}:{field}", n)
            pipe.expire(k, TTL_S)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            batch.update(self._pending)  # keep them for the next try
            self._pending = batch
            raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except (RedisError, OSError) as e:
                log.debug("guard counters not flushed: %s", e)


def _p95(hist: dict[int, int]) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    seen = 0
    for i, b in enumerate(TTFT_BUCKETS):
        seen += hist.get(i, 0)
        if seen >= 0.95 * total:
            return b if b != float("inf") else TTFT_BUCKETS[-2]
    return TTFT_BUCKETS[-2]


def readings(raw: dict[str, str | int], stable: str, candidate: str) -> dict[str, GuardReading]:
    """From the Redis hash to the guard readings the decision compares (candidate vs stable)."""
    per: dict[str, dict[str, int]] = {}
    for f, v in raw.items():
        version, _, field = str(f).rpartition(":")
        per.setdefault(version, {})[field] = int(v)
    c, s = per.get(candidate, {}), per.get(stable, {})
    cn, sn = c.get("requests", 0), s.get("requests", 0)

    def rate(d: dict[str, int], field: str) -> float:
        return d.get(field, 0) / d["requests"] if d.get("requests") else 0.0

    def hist(d: dict[str, int]) -> dict[int, int]:
        return {int(k[4:]): v for k, v in d.items() if k.startswith("ttft")}

    out = {"error_rate": GuardReading(rate(c, "errors"), rate(s, "errors"), cn, sn),
           "empty_rate": GuardReading(rate(c, "empty"), rate(s, "empty"), cn, sn)}
    ch, sh = hist(c), hist(s)
    if ch and sh:
        out["ttft_p95_s"] = GuardReading(_p95(ch), _p95(sh), sum(ch.values()), sum(sh.values()))
    return out
