"""The controller against a real Redis: phase transitions, leader election with fencing, webhooks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis as redis_sync
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from judges.queue import JudgeQueue
from monitoring import controller as controller_module
from monitoring.analysis import RolloutAnalysis
from monitoring.controller import Controller, ControllerConfig
from monitoring.notify import Notifier
from monitoring.policy import RolloutPolicy
from router import rollout
from router.registry import reconcile
from router.state import AliasState, Phase, VersionRecord
from router.store import StateStore, connect
from tests.support.servers import ThreadServer

WIN = {"n": 400, "wins": 200, "ties": 200, "losses": 0}
LOSE = {"n": 400, "wins": 0, "ties": 200, "losses": 200}
OPEN = {"n": 20, "wins": 7, "ties": 6, "losses": 7}
CATEGORIES = ["reasoning", "math", "coding", "writing"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


async def judged(store: StateStore, **cats: dict[str, int]) -> None:
    """Judged-pair counts per category of the live rollout, written where the workers write them."""
    a = (await store.load()).aliases["bot"]
    key = JudgeQueue(store.redis, store.prefix).keys.stats("bot", a.rollout_id)
    await store.redis.delete(key)
    for cat, fields in cats.items():
        for f, v in fields.items():
            await store.redis.hset(key, f"{cat}:{f}", v)


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


def controller(store: StateStore, cfg: ControllerConfig, clock: Clock | None = None, instance: str = "a",
               notifier: Notifier | None = None) -> Controller:
    return Controller(cfg, store, JudgeQueue(store.redis, store.prefix), CATEGORIES, notifier,
                      clock=clock or time.time, instance=instance)


async def started(store: StateStore, cfg: ControllerConfig, clock: Clock) -> AliasState:
    snap = await store.load()
    ctx = rollout.Context(now=clock(), stage_weights=[s.weight_pct for s in cfg.policy.stages],
                          versions=snap.versions)
    _, _, a = await store.update_alias("bot", lambda a: rollout.start(a, "v2", ctx),
                                       {"actor": "test", "by": "operator"})
    return a


async def alias(store: StateStore) -> AliasState:
    return (await store.load()).aliases["bot"]


async def test_promotes_through_every_stage_then_completes(store):
    clock, cfg = Clock(), config()
    a = await started(store, cfg, clock)
    assert (a.phase, a.weight_bp) == (Phase.SHADOW, 0)
    cats = {"math": dict(WIN), "coding": dict(WIN)}
    ctl = controller(store, cfg, clock)
    assert await ctl.lead()
    weights = []
    for _ in range(6):
        clock.t += 11
        for c in cats.values():  # new pairs in each stage (minimum 50 per stage)
            c["n"] += 30
            c["wins"] += 30
        await judged(store, **cats)
        [d] = await ctl.evaluate_all()
        weights.append((await alias(store)).weight_bp)
    assert weights == [100, 500, 2500, 5000, 10000, 0]
    final = await alias(store)
    assert (final.phase, final.stable, final.candidate) == (Phase.PROMOTED, "v2", None)
    events = await store.events(20)
    assert [e["type"] for e in events[:6]] == ["completed"] + ["promoted"] * 5
    assert all(e["by"] == "controller" for e in events[:6])
    assert events[0]["categories"]["math"]["cleared"] is True and "lower" in events[0]["categories"]["math"]
    # each stage's pair counter started when the stage did
    stages = [e["after"]["pairs_at_stage_start"] for e in reversed(events[1:6])]
    assert stages == sorted(stages) and stages[0] > 0
    assert await store.analyses() == {}  # the rollout is over: nothing left to show or alert on


@pytest.fixture
def receiver():
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        got.append(json.loads(await request.body()))
        return Response(status_code=204)

    srv = ThreadServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    yield f"{srv.url}/hook", got
    srv.stop()


async def test_rollback_records_numbers_exposure_and_fires_webhook(store, receiver):
    url, got = receiver
    clock, cfg = Clock(), config()
    cfg.webhooks = [url]
    a = await started(store, cfg, clock)
    # the candidate served 412 reasoning requests (gateways count them with the guard counters)
    await store.redis.hset(f"{store.prefix}:guards:bot:{a.rollout_id}", mapping={"v2:cat:reasoning": 412,
                                                                                  "v2:cat:math": 30})
    await judged(store, reasoning=LOSE, math=WIN)
    notifier = Notifier(cfg.webhooks)
    ctl = controller(store, cfg, clock, notifier=notifier)
    await ctl.lead()
    [d] = await ctl.evaluate_all()
    assert d.action.value == "rollback" and d.category == "reasoning"
    a = await alias(store)
    assert (a.phase, a.candidate, a.weight_bp) == (Phase.ROLLED_BACK, None, 0)
    await notifier.drain()
    [payload] = got
    assert payload["type"] == "rolled_back" and payload["by"] == "controller" and payload["alias"] == "bot"
    r = payload["categories"]["reasoning"]
    assert r["rejected"] and r["n"] == 400 and r["estimate"] == -0.5 and r["upper"] < -r["tolerance"]
    assert r["log_evalue"] >= r["threshold"]
    assert payload["exposure"] == {"reasoning": 412, "math": 30}
    assert "reasoning regressed; 412 reasoning requests were served by the candidate before the rollback" \
        in payload["text"]
    assert "*bot*: rolled back by the controller" in payload["text"]
    # idempotent: a second evaluation does nothing more
    assert await ctl.evaluate_all() == []
    assert [e["type"] for e in await store.events(5)].count("rolled_back") == 1


async def test_the_analysis_is_stored_computed_off_the_event_loop_and_cached(store, monkeypatch):
    import threading

    from monitoring import analysis

    clock, cfg = Clock(), config()
    await started(store, cfg, clock)
    coding = {"n": 30, "wins": 11, "ties": 9, "losses": 10}
    await judged(store, math=OPEN, coding=coding)
    threads: list[str] = []
    real = analysis.analyse

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(analysis, "analyse", spy)
    analysis.category_stats.cache_clear()
    ctl = controller(store, cfg, clock)
    await ctl.lead()
    await ctl.evaluate_all()
    loop_thread = threading.current_thread().name
    assert len(threads) == 2 and loop_thread not in threads  # in a worker thread, not on the loop
    stored = RolloutAnalysis.model_validate_json((await store.analyses())["bot"])
    assert stored.categories["math"].n == 20 and stored.next_gate == 0.10 and stored.decision
    assert stored.categories["math"].pairs_to_gate and stored.eta_s is not None and stored.eta_s > 0
    await ctl.evaluate_all()
    assert len(threads) == 2  # nothing changed: nothing recomputed
    await judged(store, math={"n": 21, "wins": 8, "ties": 6, "losses": 7}, coding=coding)
    await ctl.evaluate_all()
    assert len(threads) == 3  # only the category whose counts changed


async def test_pin_category_keeps_the_rest(store):
    clock, cfg = Clock(), config(on_regression="pin_category")
    await started(store, cfg, clock)
    await judged(store, math=LOSE, coding=WIN)
    ctl = controller(store, cfg, clock)
    await ctl.lead()
    [d] = await ctl.evaluate_all()
    assert d.action.value == "pin_category" and (await alias(store)).pinned_categories == ["math"]
    clock.t += 11
    [d] = await ctl.evaluate_all()
    assert d.action.value == "promote"  # the pinned category no longer blocks


async def test_deadline_without_decision_goes_inconclusive_and_holds(store):
    clock, cfg = Clock(), config()
    await started(store, cfg, clock)
    await judged(store, math=OPEN)
    ctl = controller(store, cfg, clock)
    await ctl.lead()
    clock.t += 101
    [d] = await ctl.evaluate_all()
    a = await alias(store)
    assert d.action.value == "inconclusive" and a.phase == Phase.INCONCLUSIVE and a.candidate == "v2"
    assert a.weight_bp == 0  # holds the weight
    clock.t += 1000
    [d] = await ctl.evaluate_all()
    assert d.action.value == "none"  # no repeated alerts, no failure on missing data


async def test_a_manual_promote_restarts_the_stage_minimums(store):
    clock, cfg = Clock(), config()
    await started(store, cfg, clock)
    await judged(store, math=dict(WIN), coding=dict(WIN))  # 800 pairs: far past the 50-pair minimum
    ctx = rollout.Context(now=clock(), stage_weights=[0, 1, 5, 25, 50, 100], pairs_total=800)
    await store.update_alias("bot", lambda a: rollout.advance(a, ctx), {"actor": "ops", "by": "operator"})
    ctl = controller(store, cfg, clock)
    await ctl.lead()
    clock.t += 11  # bake done; the gate is met, but the new stage has no pairs of its own yet
    [d] = await ctl.evaluate_all()
    assert d.action.value == "none" and "pairs 0/50" in d.reason
    await judged(store, math={**WIN, "n": 430, "wins": 230}, coding={**WIN, "n": 430, "wins": 230})
    [d] = await ctl.evaluate_all()
    assert d.action.value == "promote"


async def test_an_operator_change_since_the_evaluation_wins(store):
    clock, cfg = Clock(), config()
    seen = await started(store, cfg, clock)
    await judged(store, reasoning=dict(LOSE))
    ctl = controller(store, cfg, clock)
    await ctl.lead()
    ctx = rollout.Context(now=clock(), stage_weights=[0, 1, 5, 25, 50, 100])
    await store.update_alias("bot", lambda a: rollout.pause(a, ctx), {"actor": "ops", "by": "operator"})
    _, d = await ctl.evaluate(seen)  # decided on the state before the pause: refused, nothing written
    assert d.action.value == "rollback" and (await alias(store)).phase == Phase.PAUSED


async def test_leader_failover_and_fencing_prevent_double_action(store):
    clock, cfg = Clock(), config()
    await started(store, cfg, clock)
    await judged(store, reasoning=dict(LOSE))
    a = controller(store, cfg, clock, "a")
    b = controller(store, cfg, clock, "b")
    assert await a.lead() and not await b.lead()
    # `a` stalls (GC pause, SIGSTOP): its lease expires and `b` takes over with a newer epoch
    await asyncio.sleep(1.2)
    assert await b.lead() and b.epoch == (a.epoch or 0) + 1
    # the stalled `a` wakes up with a decision computed from its stale view: the fence refuses it
    snap = await alias(store)
    _, d_a = await a.evaluate(snap)
    assert d_a.action.value == "rollback"
    assert (await alias(store)).phase == Phase.SHADOW  # nothing written by the stale leader
    await b.evaluate(await alias(store))
    assert (await alias(store)).phase == Phase.ROLLED_BACK
    assert [e["type"] for e in await store.events(10)].count("rolled_back") == 1
    assert not await a.lead()  # and it learns it lost


async def test_housekeeping_is_fenced_too(store):
    clock, cfg = Clock(), config()
    a = controller(store, cfg, clock, "a")
    await a.lead()
    a.epoch = (a.epoch or 0) + 100  # as if a successor had taken over meanwhile
    from router.store import Fenced

    with pytest.raises(Fenced):
        await a.housekeeping()
    assert (await store.load()).versions["v2"].retired_at is None  # nothing written



async def test_housekeeping_never_writes_from_a_view_a_concurrent_change_made_stale(store, redis_srv, monkeypatch):
    """Housekeeping used to decide on a snapshot read outside WATCH: an operator making v2 the candidate
    meanwhile got v2 retired under it. Now a change between the read and the write makes it decide again."""
    a = controller(store, config(), Clock(), "a")
    await a.lead()
    operator = redis_sync.Redis.from_url(redis_srv.url)  # another client, as another replica would be
    decided: list[set[str]] = []

    def reconcile_racing(snap, now, retention_days):  # type: ignore[no-untyped-def]
        update, prune = reconcile(snap, now, retention_days)
        decided.append({v.name for v in update if v.retired_at})
        if len(decided) == 1:  # the operator's change lands between the read and the write
            key, raw = f"{store.prefix}:aliases", operator.hget(f"{store.prefix}:aliases", "bot")
            operator.hset(key, "bot", AliasState.model_validate_json(raw).model_copy(
                update={"candidate": "v2"}).model_dump_json())
        return update, prune

    monkeypatch.setattr(controller_module, "reconcile", reconcile_racing)
    await a.housekeeping()
    operator.close()
    assert decided == [{"v2"}, set()]  # retired on the stale view, decided again on the changed one
    assert (await store.load()).versions["v2"].retired_at is None


async def test_run_loop_elects_one_leader_and_hands_over_when_it_stops(store):
    cfg = config()
    a = controller(store, cfg, instance="a")
    b = controller(store, cfg, instance="b")
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
