"""Rollout state in Redis: versions and aliases under one key prefix, a revision counter that every
change bumps (replicas poll it), and an append-only event log (a Redis Stream).

Keys (prefix `p`): `p:versions` hash name -> JSON, `p:aliases` hash name -> JSON, `p:rev` integer,
`p:events` stream, `p:analysis` hash alias -> JSON (the controller's latest analysis of the rollout).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from router.state import AliasState, RoutingSnapshot, VersionRecord

EVENTS_MAXLEN = 100_000


@dataclass(frozen=True)
class Fence:
    """A fencing token (the controller's leadership epoch): a write happens only while `key` holds it."""

    key: str
    token: int


class Fenced(Exception):
    """The writer's fencing token is no longer current: nothing was written."""


def connect(url: str, timeout_s: float = 1.0) -> aioredis.Redis:
    """A client that fails fast (so a dead Redis never stalls a caller for long)."""
    return aioredis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=10,
        decode_responses=False,
    )


class StateStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.k_versions = f"{prefix}:versions"
        self.k_aliases = f"{prefix}:aliases"
        self.k_rev = f"{prefix}:rev"
        self.k_events = f"{prefix}:events"
        self.k_analysis = f"{prefix}:analysis"

    async def revision(self) -> int | None:
        """Current revision, or None if this Redis holds no state (new, or restarted empty)."""
        raw = await self.redis.get(self.k_rev)
        return int(raw) if raw is not None else None

    async def load(self) -> RoutingSnapshot:
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(self.k_rev)
        pipe.hgetall(self.k_versions)
        pipe.hgetall(self.k_aliases)
        rev, versions, aliases = await pipe.execute()
        return RoutingSnapshot(
            revision=int(rev or 0),
            versions={k.decode(): VersionRecord.model_validate_json(v) for k, v in versions.items()},
            aliases={k.decode(): AliasState.model_validate_json(v) for k, v in aliases.items()},
        )

    async def write(
        self,
        *,
        versions: Iterable[VersionRecord] = (),
        aliases: Iterable[AliasState] = (),
        event: dict[str, Any] | None = None,
    ) -> int:
        """Write records, bump the revision and append the event, atomically. Returns the new revision."""
        pipe = self.redis.pipeline(transaction=True)
        for v in versions:
            pipe.hset(self.k_versions, v.name, v.model_dump_json())
        for a in aliases:
            pipe.hset(self.k_aliases, a.name, a.model_dump_json())
        pipe.incr(self.k_rev)
        if event is not None:
            pipe.xadd(self.k_events, event_fields(event), maxlen=EVENTS_MAXLEN, approximate=True)
        results = await pipe.execute()
        return int(results[-2] if event is not None else results[-1])

    async def update_alias(
        self, name: str, mutate: Callable[[AliasState], tuple[str, AliasState]], event: dict[str, Any],
        fence: Fence | None = None,
    ) -> tuple[dict[str, Any], AliasState, AliasState]:
        """Read-modify-write one alias under WATCH (safe against concurrent writers). `mutate` returns the
        event's type and the new state, or raises to refuse. With a `fence`, the write happens only while
        the fencing token is still the caller's (checked in the same transaction). Returns the recorded
        event (with the before and after states)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.k_aliases, self.k_versions, *((fence.key,) if fence else ()))
                    if fence is not None and int(await pipe.get(fence.key) or 0) != fence.token:
                        raise Fenced(f"fencing token {fence.token} is no longer current")
                    raw = await pipe.hget(self.k_aliases, name)
                    if raw is None:
                        raise KeyError(name)
                    before = AliasState.model_validate_json(raw)
                    kind, after = mutate(before)
                    full = {**event, "type": kind, "alias": name, "before": before.model_dump(mode="json"),
                            "after": after.model_dump(mode="json")}
                    # a version put (back) into use is no longer retired, in the same transaction
                    used = [n for n in (after.stable, after.candidate) if n]
                    records = [VersionRecord.model_validate_json(r) for r in await pipe.hmget(self.k_versions, used)
                               if r is not None]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for v in records:
                        if v.retired_at is not None:
                            pipe.hset(self.k_versions, v.name, v.model_copy(
                                update={"retired_at": None, "retired_reason": None}).model_dump_json())
                    pipe.hset(self.k_aliases, name, after.model_dump_json())
                    pipe.incr(self.k_rev)
                    pipe.xadd(self.k_events, event_fields(full), maxlen=EVENTS_MAXLEN, approximate=True)
                    await pipe.execute()
                    return full, before, after
                except WatchError:
                    continue

    async def update_versions(
        self, mutate: Callable[[RoutingSnapshot], tuple[list[VersionRecord], list[str], dict[str, Any] | None]],
        fence: Fence | None = None,
    ) -> tuple[list[VersionRecord], list[str]]:
        """Change version records from a consistent view (under WATCH on versions and aliases, fenced like
        update_alias): `mutate` returns the records to write, the names to delete, and the event."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.k_versions, self.k_aliases, *((fence.key,) if fence else ()))
                    if fence is not None and int(await pipe.get(fence.key) or 0) != fence.token:
                        raise Fenced(f"fencing token {fence.token} is no longer current")
                    versions: dict[bytes, bytes] = await pipe.hgetall(self.k_versions)  # type: ignore[assignment]
                    aliases: dict[bytes, bytes] = await pipe.hgetall(self.k_aliases)  # type: ignore[assignment]
                    snap = RoutingSnapshot(0, {k.decode(): VersionRecord.model_validate_json(v)
                                               for k, v in versions.items()},
                                           {k.decode(): AliasState.model_validate_json(v) for k, v in aliases.items()})
                    update, delete, event = mutate(snap)
                    if not update and not delete:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return [], []
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for v in update:
                        pipe.hset(self.k_versions, v.name, v.model_dump_json())
                    if delete:
                        pipe.hdel(self.k_versions, *delete)
                    pipe.incr(self.k_rev)
                    if event is not None:
                        pipe.xadd(self.k_events, event_fields(event), maxlen=EVENTS_MAXLEN, approximate=True)
                    await pipe.execute()
                    return update, delete
                except WatchError:
                    continue

    # -- the controller's latest analysis of each rollout (read by the admin API, console and metrics) --

    async def write_analysis(self, alias: str, payload: bytes) -> None:
        await self.redis.hset(self.k_analysis, alias, payload)

    async def drop_analyses(self, keep: set[str]) -> None:
        keys: list[bytes] = await self.redis.hkeys(self.k_analysis)  # type: ignore[assignment]
        stale = [k for k in keys if k.decode() not in keep]
        if stale:
            await self.redis.hdel(self.k_analysis, *stale)

    async def analyses(self) -> dict[str, bytes]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.k_analysis)  # type: ignore[assignment]
        return {k.decode(): v for k, v in raw.items()}

    async def seed(self, snapshot: RoutingSnapshot, actor: str) -> bool:
        """Restore state into an empty Redis (first start, or a Redis that lost its data). Only one
        replica does it: a short NX lock guards the write. Records already present are kept."""
        lock = f"{self.prefix}:seed-lock"
        if not await self.redis.set(lock, actor, nx=True, ex=5):
            return False
        try:
            pipe = self.redis.pipeline(transaction=True)
            for v in snapshot.versions.values():
                pipe.hsetnx(self.k_versions, v.name, v.model_dump_json())
            for a in snapshot.aliases.values():
                pipe.hsetnx(self.k_aliases, a.name, a.model_dump_json())
            pipe.setnx(self.k_rev, max(snapshot.revision, 1))
            pipe.xadd(
                self.k_events,
                event_fields({"type": "state_seeded", "actor": actor, "aliases": sorted(snapshot.aliases)}),
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
            await pipe.execute()
            return True
        finally:
            await self.redis.delete(lock)

    async def events_after(self, after: str, count: int = 100) -> list[dict[str, Any]]:
        """Events newer than the one with id `after`, oldest first (for following the log)."""
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(  # type: ignore[assignment]
            self.k_events, min=f"({after}", count=count)
        return [{"id": rid.decode(), **orjson.loads(f[b"data"])} for rid, f in rows]

    async def events(self, count: int = 100) -> list[dict[str, Any]]:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrevrange(  # type: ignore[assignment]
            self.k_events, count=count)
        return [{"id": rid.decode(), **orjson.loads(f[b"data"])} for rid, f in rows]


def event_fields(event: dict[str, Any]) -> dict[Any, Any]:
    event.setdefault("ts", time.time())
    return {"data": orjson.dumps(event)}
