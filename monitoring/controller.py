"""The rollout controller: one leader among all replicas evaluates every managed rollout every few
seconds and acts (promote, roll back, pin a category, mark inconclusive).

Leadership is a Redis key with an expiry (`P:controller:leader`), renewed while the leader lives. Each
new leader takes a fencing epoch (`P:controller:epoch`, INCR); every action re-checks, inside its WATCH
transaction, that the epoch is still its own, so a leader that was paused (GC, SIGSTOP, a slow network)
and lost the key can never act after a successor took over. Every transition is appended to the event
log with the numbers behind it, posted to the configured webhooks and counted in metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError, WatchError

from monitoring import guards
from monitoring import metrics as m
from monitoring.decision import Action, Decision, Evidence, Phase, Progress, category_alpha, decide
from monitoring.notify import Notifier
from monitoring.policy import ControllerConfig, RolloutPolicy
from monitoring.sequential import CategoryStats, Counts, analyse
from router.registry import reconcile
from router.state import BP_MAX, AliasState
from router.store import StateStore, event_fields

log = logging.getLogger("cliffguard.controller")

_STEP_DOWN = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Controller:
    def __init__(self, cfg: ControllerConfig, store: StateStore, stats: Callable[[str, str], Any],
                 notifier: Notifier | None = None, clock: Callable[[], float] = time.time,
                 instance: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.redis: Any = store.redis
        self.stats = stats  # (alias, rollout_id) -> awaitable {category: {n, wins, ties, losses, ...}}
        self.notifier = notifier
        self.clock = clock
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.k_leader = f"{store.prefix}:controller:leader"
        self.k_epoch = f"{store.prefix}:controller:epoch"
        self.epoch: int | None = None
        self._renew = self.redis.register_script(_RENEW)
        self._stopping = asyncio.Event()
        self._last_housekeeping = 0.0

    def policy(self, alias: str) -> RolloutPolicy:
        return self.cfg.policies.get(alias, self.cfg.policy)

    # -- leadership --------------------------------------------------------------------------------

    async def lead(self) -> bool:
        """Acquire or renew leadership; returns whether this instance leads now."""
        ttl = int(self.cfg.lease_s * 1000)
        if self.epoch is not None and await self._renew(keys=[self.k_leader], args=[self.instance, ttl]):
            return True
        if await self.redis.set(self.k_leader, self.instance, nx=True, px=ttl):
            self.epoch = int(await self.redis.incr(self.k_epoch))
            m.CONTROLLER_LEADER.set(1)
            log.info("controller %s leads (epoch %d)", self.instance, self.epoch)
            return True
        if self.epoch is not None:
            log.warning("controller %s lost leadership", self.instance)
        self.epoch = None
        m.CONTROLLER_LEADER.set(0)
        return False

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if await self.lead():
                    await self.evaluate_all()
                    if self.clock() - self._last_housekeeping >= self.cfg.housekeeping_s:
                        await self.housekeeping()
            except (RedisError, OSError) as e:
                log.warning("controller: redis unavailable (%s)", e)
                self.epoch = None
            except Exception:  # a bug in one evaluation must not stop rollouts from being watched
                log.exception("controller evaluation failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.interval_s)
        if self.epoch is not None:  # step down: a successor need not wait for the lease to expire
            with contextlib.suppress(RedisError, OSError):
                await self.redis.eval(_STEP_DOWN, 1, self.k_leader, self.instance)

    def stop(self) -> None:
        self._stopping.set()

    async def housekeeping(self) -> tuple[list[str], list[str]]:
        """Retire versions nobody uses, un-retire used ones, prune those past retention."""
        self._last_housekeeping = now = self.clock()
        update, prune = reconcile(await self.store.load(), now, self.cfg.retention_days)
        if update:
            await self.store.write(versions=update, event={
                "type": "versions_retention", "actor": f"controller:{self.instance}",
                "retired": [v.name for v in update if v.retired_at], "restored": [v.name for v in update
                                                                                  if not v.retired_at]})
        if prune:
            await self.store.remove_versions(prune, {"type": "versions_pruned", "actor": f"controller:{self.instance}",
                                                     "versions": prune, "retention_days": self.cfg.retention_days})
            log.info("pruned versions past retention: %s", ", ".join(prune))
        return [v.name for v in update], prune

    # -- evaluation --------------------------------------------------------------------------------

    async def evaluate_all(self) -> list[Decision]:
        snap = await self.store.load()
        out = []
        for alias in snap.aliases.values():
            if alias.candidate and alias.phase in (Phase.SHADOW, Phase.CANARY, Phase.INCONCLUSIVE):
                out.append(await self.evaluate(alias))
            _export_alias(alias)
        return out

    async def evaluate(self, alias: AliasState) -> Decision:
        policy = self.policy(alias.name)
        counts, analysed = analyse_rollout(policy, await self.stats(alias.name, alias.rollout_id))
        for c, st in analysed.items():
            _export_category(alias.name, c, counts[c], st)
            m.CATEGORY_TOLERANCE.labels(alias.name, c).set(policy.category(c).tolerance)
        evidence = {c: Evidence(st.n, st.rejected, st.cleared) for c, st in analysed.items()}
        progress = Progress(Phase(alias.phase), alias.stage, alias.stage_started_at, alias.pairs_at_stage_start,
                            tuple(alias.pinned_categories))
        raw_guards = await self.redis.hgetall(guards.key(self.store.prefix, alias.name, alias.rollout_id))
        readings = guards.readings({k.decode() if isinstance(k, bytes) else k: v for k, v in raw_guards.items()},
                                   alias.stable, alias.candidate or "")
        decision = decide(policy, progress, evidence, self.clock(), readings)
        if decision.action != Action.NONE:
            await self.apply(alias, policy, decision, analysed, sum(k.n for k in counts.values()))
        return decision

    async def apply(self, alias: AliasState, policy: RolloutPolicy, d: Decision,
                    analysed: dict[str, CategoryStats], total_pairs: int) -> None:
        now = self.clock()

        def mutate(a: AliasState) -> AliasState:
            if a.rollout_id != alias.rollout_id or a.phase != alias.phase or a.stage != alias.stage:
                raise _Stale  # someone (an operator, another leader) changed it since we looked
            return transition(a, policy, d, now, total_pairs)

        numbers = {c: {"n": s.n, "estimate": round(s.estimate, 4), "lower": round(s.lower, 4),
                       "upper": round(s.upper, 4), "log_evalue": round(s.log_evalue, 3),
                       "threshold": round(s.threshold, 3), "tolerance": policy.category(c).tolerance,
                       "rejected": s.rejected, "cleared": s.cleared} for c, s in analysed.items()}
        event = {"type": f"controller_{d.action.value}", "actor": f"controller:{self.instance}",
                 "reason": d.reason, "category": d.category, "epoch": self.epoch, "categories": numbers,
                 **({"details": d.details} if d.details else {})}
        try:
            before, after = await self._fenced_update(alias.name, mutate, event)
        except _Stale:
            log.info("%s changed while being evaluated; re-evaluating next round", alias.name)
            return
        m.CONTROLLER_DECISIONS.labels(alias.name, d.action.value).inc()
        if "guard" in d.details:
            m.GUARD_TRIPS.labels(alias.name, str(d.details["guard"])).inc()
        m.CONTROLLER_LAST_DECISION.labels(alias.name).set(now)
        _export_alias(after)
        log.warning("%s: %s (%s)", alias.name, d.action.value, d.reason)
        if self.notifier:
            self.notifier.send({**event, "alias": alias.name, "before": before.model_dump(),
                                "after": after.model_dump(), "ts": now})

    async def _fenced_update(self, name: str, mutate: Callable[[AliasState], AliasState],
                             event: dict[str, Any]) -> tuple[AliasState, AliasState]:
        """update_alias, but only while our fencing epoch is current (checked in the same transaction)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.store.k_aliases, self.k_epoch)
                    if self.epoch is None or int(await pipe.get(self.k_epoch) or 0) != self.epoch:
                        raise _Stale
                    raw = await pipe.hget(self.store.k_aliases, name)
                    if raw is None:
                        raise _Stale
                    before = AliasState.model_validate_json(raw)
                    after = mutate(before)
                    pipe.multi()
                    pipe.hset(self.store.k_aliases, name, after.model_dump_json())
                    pipe.incr(self.store.k_rev)
                    pipe.xadd(self.store.k_events, event_fields({**event, "alias": name, "before": before.model_dump(),
                                                                   "after": after.model_dump()}),
                              maxlen=100_000, approximate=True)
                    await pipe.execute()
                    return before, after
                except WatchError:
                    continue


def analyse_rollout(policy: RolloutPolicy, raw: dict[str, dict[str, int]]
                    ) -> tuple[dict[str, Counts], dict[str, CategoryStats]]:
    """Per-category counts and statistics of a rollout, as the controller judges them."""
    counts = {c: Counts(v.get("wins", 0), v.get("ties", 0), v.get("losses", 0)) for c, v in raw.items()
              if v.get("n", 0)}
    alpha = category_alpha(policy, list(counts))
    return counts, {c: analyse(k, policy.category(c).tolerance, alpha, policy.design_effect)
                    for c, k in counts.items()}


class _Stale(Exception):
    pass


def transition(a: AliasState, policy: RolloutPolicy, d: Decision, now: float, total_pairs: int) -> AliasState:
    """The alias after a decision. Pure."""
    upd: dict[str, Any] = {"updated_at": now}
    if d.action == Action.PROMOTE:
        stage = a.stage + 1
        upd |= {"phase": Phase.CANARY.value, "stage": stage, "stage_started_at": now,
                "pairs_at_stage_start": total_pairs,
                "weight_bp": round(policy.stages[stage].weight_pct * BP_MAX / 100)}
    elif d.action == Action.COMPLETE:
        upd |= {"phase": Phase.PROMOTED.value, "previous_stable": a.stable, "stable": a.candidate,
                "candidate": None, "weight_bp": 0, "pinned_categories": []}
    elif d.action == Action.ROLLBACK:
        upd |= {"phase": Phase.ROLLED_BACK.value, "candidate": None, "weight_bp": 0, "pinned_categories": []}
    elif d.action == Action.PIN and d.category:
        upd |= {"pinned_categories": sorted({*a.pinned_categories, d.category})}
    elif d.action == Action.INCONCLUSIVE:
        upd |= {"phase": Phase.INCONCLUSIVE.value}
    return a.model_copy(update=upd)


def start_rollout(a: AliasState, candidate: str, policy: RolloutPolicy, now: float) -> AliasState:
    """A managed rollout of `candidate` from the first stage. Pure."""
    first = policy.stages[0]
    fresh = a.with_split(candidate, round(first.weight_pct * BP_MAX / 100))
    return fresh.model_copy(update={"phase": (Phase.SHADOW if first.weight_pct == 0 else Phase.CANARY).value,
                                    "stage": 0, "stage_started_at": now, "pairs_at_stage_start": 0,
                                    "pinned_categories": []})


_PHASES = [p.value for p in Phase] + ["manual"]


def _export_alias(a: AliasState) -> None:
    for p in _PHASES:
        m.ROLLOUT_PHASE.labels(a.name, p).set(1 if a.phase == p else 0)
    m.ROLLOUT_STAGE.labels(a.name).set(a.stage)
    m.ROLLOUT_WEIGHT.labels(a.name).set(a.effective_weight_bp() / BP_MAX)
    m.ROLLOUT_PINNED.labels(a.name).set(len(a.pinned_categories))


def _export_category(alias: str, cat: str, c: Counts, s: CategoryStats) -> None:
    for name, v in (("wins", c.wins), ("ties", c.ties), ("losses", c.losses)):
        m.CATEGORY_OUTCOMES.labels(alias, cat, name).set(v)
    m.CATEGORY_PAIRS.labels(alias, cat).set(s.n)
    m.CATEGORY_ESTIMATE.labels(alias, cat).set(s.estimate)
    m.CATEGORY_LOWER.labels(alias, cat).set(s.lower)
    m.CATEGORY_UPPER.labels(alias, cat).set(s.upper)
    m.CATEGORY_STATISTIC.labels(alias, cat).set(s.log_evalue)
    m.CATEGORY_THRESHOLD.labels(alias, cat).set(s.threshold)
    m.CATEGORY_PAIRS_NEEDED.labels(alias, cat).set(s.pairs_needed if s.pairs_needed is not None else -1)
