"""The controller against a real Redis: phase transitions, leader election with fencing, webhooks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitoring.controller import Controller, ControllerConfig, start_rollout
from monitoring.notify import Notifier
from monitoring.policy import RolloutPolicy
from router.state import AliasState, VersionRecord
from router.store import StateStore, connect
from tests.support.servers import ThreadServer

WIN = {"n": 400, "wins": 200, "ties": 200, "losses": 0}
LOSE = {"n": 400, "wins": 0, "ties": 200, "losses": 200}
OPEN = {"n": 20, "wins": 7, "ties": 6, "losses": 7}


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


class Scripted:
    """Judged-pair counts per category, as the workers would have written them."""

    def __init__(self, **cats: dict[str, int]) -> None:
        self.cats = cats

    async def __call__(self, alias: str, rollout_id: str) -> dict[str, dict[str, int]]:
        return dict(self.cats)


@pytest.fixture
async def store(redis_srv, key_prefix):
    client = connect(redis_srv.url)
    s = StateStore(client, key_prefix)
    await s.write(versions=[VersionRecord(name=v, base_url="http://127.0.0.1:9/v1", model=v) for v in ("v1", "v2")],
                  aliases=[AliasState(name="bot", stable="v1")])
    yield s
    await client.aclose()


def config(**policy: Any) -> ControllerConfig:
    return ControllerConfig(interval_s=0.05, lease_s=1.0,
                            policy=RolloutPolicy(min_bake_s=10, min_pairs_per_stage=50, stage_deadline_s=100, **policy))


async def started(store: StateStore, cfg: ControllerConfig, clock: Clock) -> AliasState:
    _, a = await store.update_alias("bot", lambda a: start_rollout(a, "v2", cfg.policy, clock()),
                                    {"type": "rollout_started", "actor": "test"})
    return a


async def alias(store: StateStore) -> AliasState:
    return (await store.load()).aliases["bot"]


async def test_promotes_through_every_stage_then_completes(store):
    clock, cfg = Clock(), config()
    a = await started(store, cfg, clock)
    assert (a.phase, a.weight_bp) == ("shadow", 0)
    stats = Scripted(math=dict(WIN), coding=dict(WIN))
    ctl = Controller(cfg, store, stats, clock=clock, instance="a")
    assert await ctl.lead()
    weights = []
    for _ in range(6):
        clock.t += 11
        for c in stats.cats.values():  # new pairs in each stage (minimum 50 per stage)
            c["n"] += 30
            c["wins"] += 30
        [d] = await ctl.evaluate_all()
        weights.append((await alias(store)).weight_bp)
    assert weights == [100, 500, 2500, 5000, 10000, 0]
    final = await alias(store)
    assert (final.phase, final.stable, final.candidate) == ("promoted", "v2", None)
    events = await store.events(20)
    assert [e["type"] for e in events[:6]] == ["controller_complete"] + ["controller_promote"] * 5
    assert events[0]["categories"]["math"]["cleared"] is True and "lower" in events[0]["categories"]["math"]


@pytest.fixture
def receiver():
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        got.append(json.loads(await request.body()))
        return Response(status_code=204)

    srv = ThreadServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    yield f"{srv.url}/hook", got
    srv.stop()


async def test_rollback_records_numbers_and_fires_webhook(store, receiver):
    url, got = receiver
    clock, cfg = Clock(), config()
    cfg.webhooks = [url]
    await started(store, cfg, clock)
    notifier = Notifier(cfg.webhooks)
    ctl = Controller(cfg, store, Scripted(reasoning=LOSE, math=WIN), notifier=notifier, clock=clock, instance="a")
    await ctl.lead()
    [d] = await ctl.evaluate_all()
    assert d.action.value == "rollback" and d.category == "reasoning"
    a = await alias(store)
    assert (a.phase, a.candidate, a.weight_bp) == ("rolled_back", None, 0)
    await notifier.drain()
    [payload] = got
    assert payload["type"] == "controller_rollback" and payload["alias"] == "bot"
    r = payload["categories"]["reasoning"]
    assert r["rejected"] and r["n"] == 400 and r["estimate"] == -0.5 and r["upper"] < -r["tolerance"]
    assert r["log_evalue"] >= r["threshold"]
    assert "*bot*: rollback" in payload["text"] and "reasoning: estimate -0.500" in payload["text"]
    # idempotent: a second evaluation does nothing more
    assert await ctl.evaluate_all() == []
    assert [e["type"] for e in await store.events(5)].count("controller_rollback") == 1


async def test_pin_category_keeps_the_rest(store):
    clock, cfg = Clock(), config(on_regression="pin_category")
    await started(store, cfg, clock)
    ctl = Controller(cfg, store, Scripted(math=LOSE, coding=WIN), clock=clock, instance="a")
    await ctl.lead()
    [d] = await ctl.evaluate_all()
    assert d.action.value == "pin_category" and (await alias(store)).pinned_categories == ["math"]
    clock.t += 11
    [d] = await ctl.evaluate_all()
    assert d.action.value == "promote"  # the pinned category no longer blocks


async def test_deadline_without_decision_goes_inconclusive_and_holds(store):
    clock, cfg = Clock(), config()
    await started(store, cfg, clock)
    ctl = Controller(cfg, store, Scripted(math=OPEN), clock=clock, instance="a")
    await ctl.lead()
    clock.t += 101
    [d] = await ctl.evaluate_all()
    a = await alias(store)
    assert d.action.value == "inconclusive" and a.phase == "inconclusive" and a.candidate == "v2"
    assert a.weight_bp == 0  # holds the weight
    clock.t += 1000
    [d] = await ctl.evaluate_all()
    assert d.action.value == "none"  # no repeated alerts, no failure on missing data


async def test_leader_failover_and_fencing_prevent_double_action(store):
    clock, cfg = Clock(), config()
    await started(store, cfg, clock)
    stats = Scripted(reasoning=dict(LOSE))
    a = Controller(cfg, store, stats, clock=clock, instance="a")
    b = Controller(cfg, store, stats, clock=clock, instance="b")
    assert await a.lead() and not await b.lead()
    # `a` stalls (GC pause, SIGSTOP): its lease expires and `b` takes over with a newer epoch
    await asyncio.sleep(1.2)
    assert await b.lead() and b.epoch == (a.epoch or 0) + 1
    # the stalled `a` wakes up with a decision computed from its stale view: the fence refuses it
    snap = await alias(store)
    d_a = await a.evaluate(snap)
    assert d_a.action.value == "rollback"
    assert (await alias(store)).phase == "shadow"  # nothing written by the stale leader
    await b.evaluate(await alias(store))
    assert (await alias(store)).phase == "rolled_back"
    assert [e["type"] for e in await store.events(10)].count("controller_rollback") == 1
    assert not await a.lead()  # and it learns it lost


async def test_run_loop_elects_one_leader_and_hands_over_when_it_stops(store):
    cfg = config()
    a = Controller(cfg, store, Scripted(), instance="a")
    b = Controller(cfg, store, Scripted(), instance="b")
    ta, tb = asyncio.create_task(a.run()), asyncio.create_task(b.run())
    await asyncio.sleep(0.3)
    assert (a.epoch is None) != (b.epoch is None)  # exactly one leads
    leader, other, t_leader = (a, b, ta) if a.epoch else (b, a, tb)
    leader.stop()
    await t_leader
    deadline = time.monotonic() + 2
    while other.epoch is None:
        assert time.monotonic() < deadline, "no takeover"
        await asyncio.sleep(0.05)
    other.stop()
    await asyncio.gather(ta, tb)
