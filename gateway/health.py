"""Liveness and readiness.

`/healthz`: the process answers. `/readyz`: 200 when routing state is loaded and every alias's stable
backend answers and serves its model; 503 otherwise. Redis being down alone does not fail readiness
(the gateway keeps serving the last known state, so pulling every replica would turn a Redis outage
into a full outage); it is reported in the body and in `cliffguard_redis_up`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from gateway.context import GatewayContext


async def readiness(ctx: GatewayContext) -> tuple[int, dict[str, Any]]:
    snap = ctx.state.snapshot
    try:
        await asyncio.wait_for(ctx.store.redis.ping(), timeout=1.0)
        redis = {"ok": True, "detail": "ok"}
    except (RedisError, OSError, TimeoutError) as e:
        redis = {"ok": False, "detail": f"unreachable ({type(e).__name__}); serving last known state "
                 f"(revision {snap.revision})"}
    used = sorted({n for a in snap.aliases.values() for n in (a.stable, a.candidate) if n})
    probes = await asyncio.gather(*(ctx.backends.probe(snap.versions[n]) for n in used if n in snap.versions))
    backends = {n: {"ok": ok, "detail": detail} for n, (ok, detail) in zip(used, probes, strict=False)}
    stable_ok = all(backends.get(a.stable, {"ok": False})["ok"] for a in snap.aliases.values())
    ready = ctx.state.loaded and stable_ok
    body = {
        "status": ("ready" if redis["ok"] else "degraded") if ready else "not_ready",
        "state_loaded": ctx.state.loaded,
        "state_revision": snap.revision,
        "redis": redis,
        "backends": backends,
    }
    return (200 if ready else 503), body
