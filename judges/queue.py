"""The judge queue and its results in Redis.

- `P:judge:samples`: a Stream of sampled requests, consumed through the group `judges`. Entries are
  trimmed by the workers once acknowledged (`trim_done`), never before: the stream is the backlog, bounded
  by `stream_maxlen`; when full, appends wait in the gateways' buffers.
- `P:judge:dead`: the dead-letter Stream (messages that failed `max_attempts` times).
- `P:judge:budget:s:<epoch hour>` (hash: epoch second -> admitted) / `P:judge:budget:d:<day>`: the global
  budget counters. A candidate is admitted against the counters of the second and day it was answered in
  (not the second it reaches Redis), in the same Lua script as the append, so the budget holds across
  replicas and a backlog flushed after an outage is judged by the same rule as live traffic.
- `P:judge:worker:<consumer>`: a live worker's heartbeat (a key with a TTL).
- `P:judge:done:<request id>`: idempotency marker; `P:judge:pair:<request id>`: the pair record (TTL);
  `P:judge:pairs:<alias>`: sorted set of request ids by time, for export, trimmed to the pairs' retention
  on every write; `P:judge:stats:<alias>:<rollout id>`: hash `<category>:<field>` -> integer, added with
  HINCRBY (order-invariant: any number of workers may add at once). Fields: n, wins, ties, losses,
  inconsistent, rated, rating_sum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

GROUP = "judges"
BUDGET_SECONDS_KEPT_S = 7200  # the per-second counters outlive any outage a buffer or a spill file spans
BUDGET_DAYS_KEPT_S = 172_800
COUNT_EXACT = 1000  # undelivered entries counted one by one up to this many

Entry = tuple[bytes, dict[bytes, bytes]]

# KEYS: stream, then (second-hash, day) per distinct second. ARGV: max_s, max_d, maxlen, kept_s, kept_d, then
# (index of its second-hash key, its second, payload) per candidate, oldest first. Stops at a full stream (the
# rest waits, in order); returns {admitted, over budget, candidates processed}.
_APPEND = """
local max_s, max_d, maxlen = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local len = redis.call('XLEN', KEYS[1])
local counts, added = {}, {}
local admitted, over, done = 0, 0, 0
for i = 6, #ARGV, 3 do
  local k = tonumber(ARGV[i])
  local skey, dkey, sec = KEYS[k], KEYS[k + 1], ARGV[i + 1]
  local sid, did = skey .. '|' .. sec, dkey
  if counts[sid] == nil then counts[sid] = tonumber(redis.call('HGET', skey, sec) or '0') end
  if counts[did] == nil then counts[did] = tonumber(redis.call('GET', dkey) or '0') end
  if counts[sid] >= max_s or counts[did] >= max_d then
    over = over + 1
  else
    if len >= maxlen then break end
    redis.call('XADD', KEYS[1], '*', 'sample', ARGV[i + 2])
    len = len + 1; admitted = admitted + 1
    counts[sid] = counts[sid] + 1; counts[did] = counts[did] + 1
    added[sid] = {skey, sec, (added[sid] or {nil, nil, 0})[3] + 1}
    added[did] = {dkey, nil, (added[did] or {nil, nil, 0})[3] + 1}
  end
  done = done + 1
end
for _, a in pairs(added) do
  if a[2] then
    redis.call('HINCRBY', a[1], a[2], a[3]); redis.call('EXPIRE', a[1], ARGV[4])
  else
    redis.call('INCRBY', a[1], a[3]); redis.call('EXPIRE', a[1], ARGV[5])
  end
end
return {admitted, over, done}
"""

# the pair, its index entry (the index trimmed to the retention and expiring with it) and the counts,
# exactly once per request id
_RECORD = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[1])))
  redis.call('EXPIRE', KEYS[3], ARGV[1])
  for i = 5, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  end
  return 1
end
return 0
"""


@dataclass(frozen=True)
class AppendResult:
    admitted: int  # in the stream now
    over_budget: int  # not sampled: the budget of their second (or day) was spent
    processed: int  # candidates decided; the rest wait (the stream is full)


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

    def budget_second(self, epoch_s: int) -> str:
        return f"{self.prefix}:judge:budget:s:{epoch_s // 3600}"

    def budget_day(self, epoch_s: int) -> str:
        return f"{self.prefix}:judge:budget:d:{epoch_s // 86400}"

    def worker(self, consumer: str) -> str:
        return f"{self.prefix}:judge:worker:{consumer}"


class JudgeQueue:
    def __init__(self, client: aioredis.Redis, prefix: str, maxlen: int = 100_000) -> None:
        self.redis = client
        self.r: Any = client  # redis-py's stubs do not type stream replies usefully
        self.keys = Keys(prefix)
        self.maxlen = maxlen
        self._append = client.register_script(_APPEND)
        self._record = client.register_script(_RECORD)

    async def append(self, candidates: list[tuple[float, bytes]], max_per_second: int,
                     max_per_day: int) -> AppendResult:
        """Admit candidates (answered at time ts, oldest first) against the global budget of their own second
        and day, and append the admitted ones."""
        keys: list[str] = [self.keys.samples]
        slot: dict[int, int] = {}  # epoch second -> index of its budget keys
        args: list[Any] = [max_per_second, max_per_day, self.maxlen, BUDGET_SECONDS_KEPT_S, BUDGET_DAYS_KEPT_S]
        for ts, payload in candidates:
            sec = int(ts)
            if sec not in slot:
                slot[sec] = len(keys) + 1  # Lua counts from 1
                keys += [self.keys.budget_second(sec), self.keys.budget_day(sec)]
            args += [slot[sec], sec, payload]
        admitted, over, processed = await self._append(keys=keys, args=args)
        return AppendResult(int(admitted), int(over), int(processed))

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

    # -- consuming (the workers) -------------------------------------------------------------------

    async def read(self, consumer: str, count: int, block_ms: int, own_pending: bool = False) -> list[Entry]:
        """New entries for this consumer, or (own_pending) those it was given before and has not acknowledged
        (a restarted worker that kept its name)."""
        try:
            resp = await self.r.xreadgroup(GROUP, consumer, {self.keys.samples: "0" if own_pending else ">"},
                                           count=count, block=None if own_pending or block_ms <= 0 else block_ms)
        except aioredis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await self.ensure_group()  # Redis came back empty (no persistence): the group is gone too
            return []
        return [e for _, entries in resp for e in entries if e[1]] if resp else []

    async def heartbeat(self, consumer: str, ttl_s: float) -> None:
        await self.r.set(self.keys.worker(consumer), b"1", px=int(ttl_s * 1000))

    async def gone_consumers(self, me: str, dead_after_s: float) -> list[tuple[str, int]]:
        """Consumers holding pending entries that have no heartbeat and have not touched the group for
        dead_after_s: their worker is gone (killed, or scaled down). Returns (name, pending)."""
        consumers: list[dict[str, Any]] = await self.r.xinfo_consumers(self.keys.samples, GROUP)
        idle = [(_s(c["name"]), int(c["pending"])) for c in consumers
                if _s(c["name"]) != me and int(c["idle"]) >= dead_after_s * 1000]
        if not idle:
            return []
        pipe = self.r.pipeline(transaction=False)
        for name, _ in idle:
            pipe.exists(self.keys.worker(name))
        return [c for c, up in zip(idle, await pipe.execute(), strict=True) if not up]

    async def claim_from(self, gone: str, me: str, count: int, idle_s: float) -> list[Entry]:
        """Take over up to `count` of a gone consumer's pending entries (idle as long as the consumer: a
        second worker claiming at the same moment gets none of them); forget the consumer once it holds
        none."""
        pending: list[dict[str, Any]] = await self.r.xpending_range(self.keys.samples, GROUP, min="-", max="+",
                                                                   count=count, consumername=gone)
        if not pending:
            await self.r.xgroup_delconsumer(self.keys.samples, GROUP, gone)  # it holds nothing now
            return []
        claimed: list[Entry] = await self.r.xclaim(self.keys.samples, GROUP, me, int(idle_s * 1000),
                                                   [p["message_id"] for p in pending])
        return [e for e in claimed if e and e[1]]

    async def claim_idle(self, me: str, idle_s: float, count: int) -> list[Entry]:
        """Entries pending longer than idle_s under any consumer, scanning the whole pending list (XAUTOCLAIM
        in a loop) until `count` are taken or none is left."""
        out: list[Entry] = []
        start: bytes | str = "0-0"
        while len(out) < count:
            res = await self.r.xautoclaim(self.keys.samples, GROUP, me, int(idle_s * 1000),
                                              start_id=start, count=count - len(out))
            out += [(i, f) for i, f in res[1] if f]
            start = res[0]
            if _s(start) == "0-0":
                break
        return out

    async def trim_done(self) -> int:
        """Drop entries every worker is done with: older than the oldest pending one and already delivered.
        Never an undelivered entry."""
        group = await self._group()
        if group is None:
            return 0
        pending: dict[str, Any] = await self.r.xpending(self.keys.samples, GROUP)
        last = _s(group["last-delivered-id"])
        if last == "0-0":
            return 0
        ms, seq = (int(x) for x in last.split("-"))
        keep_from = _s(pending["min"]) if pending["pending"] else f"{ms}-{seq + 1}"
        return int(await self.r.xtrim(self.keys.samples, minid=keep_from, approximate=False))

    async def backlog(self, now: float | None = None) -> tuple[int, float]:
        """Samples not yet judged (pending + undelivered) and the age in seconds of the oldest one.

        Undelivered entries are counted from the stream itself, after the group's last-delivered id. The
        group's `lag` is used only past COUNT_EXACT entries: Redis 7 keeps it wrong for good once entries ahead
        of the group were trimmed (it reported thousands of unjudged samples when there were none)."""
        now = time.time() if now is None else now
        group = await self._group()
        if group is None:
            return 0, 0.0
        key = self.keys.samples
        pending: dict[str, Any] = await self.r.xpending(key, GROUP)
        after = [i for i, _ in await self.r.xrange(key, min=f"({_s(group['last-delivered-id'])}", max="+",
                                                   count=COUNT_EXACT + 1)]
        undelivered = len(after)
        if undelivered > COUNT_EXACT:  # a big backlog: the lag, if it is possible at all, else the length
            length = int(await self.r.xlen(key))
            lag = group.get("lag")
            undelivered = int(lag) if lag is not None and COUNT_EXACT < int(lag) <= length else length
        oldest = ([pending["min"]] if pending["pending"] else []) + after[:1]
        age = max((now - _id(i)[0] / 1000 for i in oldest), default=0.0)
        return int(pending["pending"]) + undelivered, max(age, 0.0)

    async def _group(self) -> dict[str, Any] | None:
        try:
            groups: list[dict[str, Any]] = await self.r.xinfo_groups(self.keys.samples)
        except aioredis.ResponseError:  # no stream yet
            return None
        return next((g for g in groups if _s(g["name"]) == GROUP), None)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _id(v: bytes | str) -> tuple[int, int]:
    ms, _, seq = _s(v).partition("-")
    return int(ms), int(seq or 0)
