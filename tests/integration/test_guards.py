"""Operational guards: the gateway's per-version counters reach Redis, and a candidate erroring far more
than stable is rolled back by the controller."""

from __future__ import annotations

import asyncio
import time

import httpx

from judges.queue import JudgeQueue
from monitoring import guards
from monitoring.controller import Controller, ControllerConfig
from monitoring.policy import RolloutPolicy
from router.store import StateStore, connect
from tests.support.servers import free_port

ADMIN = {"authorization": "Bearer admin-secret"}


async def test_candidate_errors_trip_the_guard_and_roll_back(backend_factory, gateway_factory, redis_srv, key_prefix):
    _, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft", status=500)  # every answer a 500: users get stable (fallback)
    versions = [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}]
    stages = [{"name": "canary", "weight_pct": 50}, {"name": "full", "weight_pct": 100}]
    gw = gateway_factory(versions, [{"name": "bot", "stable": "v1"}],
                         controller={"enabled": False, "policy": {"stages": stages}})
    r = httpx.post(f"{gw.url}/admin/aliases/bot/rollout", headers=ADMIN, json={"candidate": "v2"})
    assert r.status_code == 200
    with httpx.Client(base_url=gw.url, timeout=10) as h:
        for i in range(200):
            r = h.post("/v1/chat/completions", json={"model": "bot", "user": f"u{i}", "messages": []})
            assert r.status_code == 200 and r.headers["x-cliffguard-version"] == "v1"  # nobody saw the errors
    client = connect(redis_srv.url)
    store = StateStore(client, key_prefix)
    alias = (await store.load()).aliases["bot"]
    k = guards.key(key_prefix, "bot", alias.rollout_id)
    deadline = time.monotonic() + 5
    while int((await client.hget(k, "v2:errors")) or 0) < 60:  # flushed in the background, every second
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    cfg = ControllerConfig(policy=RolloutPolicy(min_bake_s=0, stages=stages))
    ctl = Controller(cfg, store, JudgeQueue(client, key_prefix), ["other"], instance=f"t{free_port()}")
    await ctl.lead()
    [d] = await ctl.evaluate_all()
    events = await store.events(3)
    await client.aclose()
    assert d.action.value == "rollback" and "error_rate" in d.reason and "lower bound" in d.reason
    assert events[0]["type"] == "rolled_back" and events[0]["details"] == {"guard": "error_rate"}
    assert events[0]["exposure"] == {}  # the candidate's failures were hidden by the fallback: nobody saw them
