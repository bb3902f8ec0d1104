"""Scenario: a managed rollout on two gateway replicas, judged live, until the controller acts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from judges.config import JudgingConfig
from judges.queue import JudgeQueue
from judges.worker import JudgeWorker
from router.live_state import LiveState
from router.store import StateStore, connect
from tests.support.servers import ThreadServer

ADMIN = {"authorization": "Bearer admin-secret"}
POLICY = {"stages": [{"name": "canary", "weight_pct": 50}, {"name": "full", "weight_pct": 100}],
          "min_bake_s": 0, "min_pairs_per_stage": 0, "default_category": {"tolerance": 0.05}}


async def rollback_scenario(gateway_factory: Callable[..., ThreadServer], versions: list[dict[str, Any]],
                            judge_url: str, redis_url: str, prefix: str, prompts: list[str], category: str,
                            request_extra: dict[str, Any] | None = None, timeout_s: float = 60
                            ) -> tuple[float, dict[str, Any]]:
    """Start a rollout of v2 at 50% on two replicas, send traffic, judge it; returns (seconds from the
    rollback event until both replicas route every former candidate user to stable, the event)."""
    judging = JudgingConfig.model_validate({
        "sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
        "judge": {"base_url": f"{judge_url}/v1", "model": "scripted"},
        "worker": {"metrics_port": None, "claim_idle_s": 2.0}})
    replicas = [gateway_factory(versions, [{"name": "bot", "stable": "v1"}], judging=judging.model_dump(),
                                controller={"interval_s": 0.2, "lease_s": 2.0, "policy": POLICY}) for _ in range(2)]
    r = httpx.post(f"{replicas[0].url}/admin/aliases/bot/rollout", headers=ADMIN,
                   json={"candidate": "v2", "reason": "scenario"})
    assert r.status_code == 200 and r.json()["weight_pct"] == 50 and r.json()["phase"] == "canary", r.text

    client = connect(redis_url)
    store = StateStore(client, prefix)
    state = LiveState(store)
    await state.start()
    worker = JudgeWorker(judging, JudgeQueue(client, prefix), state)
    worker_task = asyncio.create_task(worker.run())
    users = [f"user-{i}" for i in range(24)]
    switched: dict[str, float] = {}  # replica -> when its routing state first showed no candidate

    async def candidate(h: httpx.AsyncClient, rep: ThreadServer) -> str | None:
        st = (await h.get(f"{rep.url}/admin/state", headers=ADMIN)).json()
        found: str | None = next(a for a in st["aliases"] if a["name"] == "bot")["candidate"]
        return found

    async def watch(h: httpx.AsyncClient) -> None:
        # the replicas' in-memory routing state, polled every 20 ms: what routing uses, with no backend
        # (a CPU vLLM takes hundreds of ms per request) in the measurement
        while len(switched) < len(replicas):
            for rep in replicas:
                if rep.url not in switched and await candidate(h, rep) is None:
                    switched[rep.url] = time.time()
            await asyncio.sleep(0.02)

    try:
        async with httpx.AsyncClient(timeout=60) as h:
            # the other replica learns of the rollout on its next poll: until then it routes everyone to
            # stable, and "no candidate" there would not mean it has seen the rollback
            ready = time.monotonic() + 10
            while [await candidate(h, rep) for rep in replicas] != ["v2"] * len(replicas):
                assert time.monotonic() < ready, "a replica never saw the rollout"
                await asyncio.sleep(0.02)

            async def version(url: str, user: str, i: int) -> str:
                resp = await h.post(f"{url}/v1/chat/completions", headers={"x-cliffguard-category": category},
                                    json={"model": "bot", "user": user, **(request_extra or {}),
                                          "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]})
                assert resp.status_code == 200, resp.text
                return resp.headers["x-cliffguard-version"]

            before = {u: await version(replicas[i % 2].url, u, i) for i, u in enumerate(users)}
            on_candidate = [u for u, v in before.items() if v == "v2"]
            assert on_candidate, "nobody on the candidate at 50%"
            watcher = asyncio.create_task(watch(h))
            deadline = time.monotonic() + timeout_s
            event = None
            i = 0
            while event is None:  # traffic flows until the leader rolls back
                assert time.monotonic() < deadline, f"no rollback; judged {worker.stats.judged}"
                await version(replicas[i % 2].url, users[i % len(users)], i)
                i += 1
                event = next((e for e in await store.events(5) if e["type"] == "rolled_back"
                              and e["by"] == "controller"), None)
            await asyncio.wait_for(watcher, 10)
            took = max(switched.values()) - event["ts"]
            # and the traffic really goes to stable now, on both replicas, for the former candidate users
            after = {(rep.url, u): await version(rep.url, u, 0) for rep in replicas for u in on_candidate}
            states = [(await h.get(f"{rep.url}/admin/state", headers=ADMIN)).json() for rep in replicas]
            assert set(after.values()) == {"v1"}, (after, states, event)
            # the rollout's per-category series are gone, so the regression alerts resolve
            for rep in replicas:
                while "cliffguard_category_estimate{" in (await h.get(f"{rep.url}/metrics")).text:
                    assert time.monotonic() < deadline + 10, "category series still exported after the rollback"
                    await asyncio.sleep(0.2)
            return took, event
    finally:
        worker.stop()
        await worker_task
        await worker.http.close()
        await state.stop()
        await client.aclose()
