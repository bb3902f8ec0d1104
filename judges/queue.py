"""The judge queue and its results in Redis.

- `P:judge:samples`: a Stream of sampled requests, consumed through the group `judges`.
- `P:judge:dead`: the dead-letter Stream (messages that failed `max_attempts` times).
- `P:judge:budget:s:<epoch second>` / `P:judge:budget:d:<day>`: global budget counters. The append and
  the budget check are one Lua script, so the budget holds across replicas without a second round trip.
- `P:judge:done:<request id>`: idempotency marker; `P:judge:pair:<request id>`: the pair record (TTL);
  `P:judge:pairs:<alias>`: sorted set of request ids by time, for export;
  `P:judge:stats:<alias>:<rollout id>`: hash `<category>:<field>` -> integer, added with HINCRBY
  (order-invariant: any number of workers may add at once). Fields: n, wins, ties, losses,
  inconsistent, rated, rating_sum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

GROUP = "judges"

_APPEND = """
local max_s = tonumber(ARGV[1]); local max_d = tonumber(ARGV[2]); local maxlen = tonumber(ARGV[3])
local s = tonumber(redis.call('GET', KEYS[2]) or '0')
local d = tonumber(redis.call('GET', KEYS[3]) or '0')
local appended, refused = 0, 0
for i = 4, #ARGV do
  if s < max_s and d < max_d then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'sample', ARGV[i])
    s = s + 1; d = d + 1; appended = appended + 1
  else
    refused = refused + 1
  end
end
if appended > 0 then
  redis.call('INCRBY', KEYS[2], appended); redis.call('EXPIRE', KEYS[2], 5)
  redis.call('INCRBY', KEYS[3], appended); redis.call('EXPIRE', KEYS[3], 172800)
end
return {appended, refused}
"""

_RECORD = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
  for i = 5, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  end
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def samples(self) -> str:
        return f"{self.prefix}:judge:samples"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:judge:dead"

    def done(self, request_id: str) -> str:
        return f"{self.prefix}:judge:done:{request_id}"

    def pair(self, request_id: str) -> str:
        return f"{self.prefix}:judge:pair:{request_id}"

    def pairs(self, alias: str) -> str:
        return f"{self.prefix}:judge:pairs:{alias}"

    def stats(self, alias: str, rollout_id: str) -> str:
        return f"{self.prefix}:judge:stats:{alias}:{rollout_id}"


class JudgeQueue:
    def __init__(self, client: aioredis.Redis, prefix: str, maxlen: int = 100_000) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.maxlen = maxlen
        self._append = client.register_script(_APPEND)
        self._record = client.register_script(_RECORD)

    async def append(self, payloads: list[bytes], max_per_second: float, max_per_day: int,
                     now: float | None = None) -> tuple[int, int]:
        """Append samples within the global budget; returns (appended, refused by the budget)."""
        now = time.time() if now is None else now
        sec, day = int(now), int(now // 86400)
        keys = [self.keys.samples, f"{self.keys.prefix}:judge:budget:s:{sec}",
                f"{self.keys.prefix}:judge:budget:d:{day}"]
        appended, refused = await self._append(
            keys=keys, args=[int(max_per_second), max_per_day, self.maxlen, *payloads])
        return int(appended), int(refused)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.samples, GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def record(self, *, request_id: str, alias: str, rollout_id: str, pair_json: str, ts: float,
                     increments: dict[str, int], ttl_s: int) -> bool:
        """Store the pair and add its counts exactly once per request id (a redelivered message is a no-op)."""
        args: list[Any] = [ttl_s, pair_json, ts, request_id]
        for f, n in increments.items():
            args += [f, n]
        keys = [self.keys.done(request_id), self.keys.pair(request_id), self.keys.pairs(alias),
                self.keys.stats(alias, rollout_id)]
        return bool(await self._record(keys=keys, args=args))

    async def stats(self, alias: str, rollout_id: str) -> dict[str, dict[str, int]]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(  # type: ignore[assignment]
            self.keys.stats(alias, rollout_id))
        out: dict[str, dict[str, int]] = {}
        for k, v in raw.items():
            cat, _, field = k.decode().rpartition(":")
            out.setdefault(cat, {})[field] = int(v)
        return out
