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

from redis.exceptions import RedisError

from judges.queue import JudgeQueue
from monitoring import guards
from monitoring import metrics as m
from monitoring.analysis import RolloutAnalysis, analyse_rollout
from monitoring.decision import Action, Decision, Progress, decide
from monitoring.notify import Notifier
from monitoring.policy import ControllerConfig, RolloutPolicy
from monitoring.rollouts import Rollouts
from router import rollout
from router.registry import reconcile
from router.rollout import Context, Refused
from router.state import AliasState, RoutingSnapshot, VersionRecord
from router.store import Fence, Fenced, StateStore

log = logging.getLogger("cliffguard.controller")

_STEP_DOWN = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Controller:
    def __init__(self, cfg: ControllerConfig, store: StateStore, queue: JudgeQueue, categories: list[str],
                 notifier: Notifier | None = None, clock: Callable[[], float] = time.time,
                 instance: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.redis: Any = store.redis
        self.queue = queue  # the judged pairs' counts per rollout
        self.categories = categories  # the configured taxonomy: the rollback test's budget is split over it
        self.rollouts = Rollouts(store, notifier)
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
            except Fenced:  # a successor took over while we were paused: we no longer lead
                log.warning("controller %s was fenced off", self.instance)
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
        """Retire versions nobody uses, un-retire used ones, prune those past retention: decided on a
        consistent view of versions and aliases and written in the same fenced transaction."""
        self._last_housekeeping = now = self.clock()
        actor = f"controller:{self.instance}"

        def mutate(snap: RoutingSnapshot) -> tuple[list[VersionRecord], list[str], dict[str, Any] | None]:
            update, prune = reconcile(snap, now, self.cfg.retention_days)
            event = {"type": "versions_retention", "actor": actor, "retention_days": self.cfg.retention_days,
                     "retired": [v.name for v in update if v.retired_at],
                     "restored": [v.name for v in update if not v.retired_at], "pruned": prune}
            return update, prune, event

        update, prune = await self.store.update_versions(mutate, self._fence())
        if prune:
            log.info("pruned versions past retention: %s", ", ".join(prune))
        return [v.name for v in update], prune

    def _fence(self) -> Fence:
        return Fence(self.k_epoch, self.epoch if self.epoch is not None else -1)

    # -- evaluation --------------------------------------------------------------------------------

    async def evaluate_all(self) -> list[Decision]:
        """Analyse every alias with a candidate (managed or set by hand), store the analyses for every view
        to read, and act on the managed rollouts."""
        snap = await self.store.load()
        out = []
        for alias in snap.aliases.values():
            if not alias.candidate:
                continue
            analysis, decision = await self.evaluate(alias)
            await self.store.write_analysis(alias.name, analysis.model_dump_json().encode())
            out.append(decision)
        if any(d.action != Action.NONE for d in out):
            snap = await self.store.load()  # a rollout that just ended leaves nothing to show or alert on
        await self.store.drop_analyses({a.name for a in snap.aliases.values() if a.candidate})
        return out

    async def evaluate(self, alias: AliasState) -> tuple[RolloutAnalysis, Decision]:
        policy = self.policy(alias.name)
        stats = await self.queue.stats(alias.name, alias.rollout_id)
        now = self.clock()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(guards.key(self.store.prefix, alias.name, alias.rollout_id))
        for k in guards.window_keys(self.store.prefix, alias.name, alias.rollout_id, time.time(),
                                    policy.guards.window_minutes):
            pipe.hgetall(k)
        guard_hash, *recent = await pipe.execute()
        # the statistics leave the event loop (the gateway's proxy runs on it); unchanged counts are cached
        analysis = await asyncio.to_thread(analyse_rollout, policy, self.categories, alias, stats, guard_hash, now,
                                           recent)
        progress = Progress(alias.phase, alias.stage, alias.stage_started_at, alias.pairs_at_stage_start,
                            tuple(alias.pinned_categories))
        decision = decide(policy, progress, analysis.evidence(), now, analysis.guards)
        analysis.decision = decision.reason if decision.action == Action.NONE else \
            f"{decision.action.value}: {decision.reason}"
        if decision.action != Action.NONE:
            await self.act(alias, policy, decision, analysis)
        return analysis, decision

    async def act(self, alias: AliasState, policy: RolloutPolicy, d: Decision, analysis: RolloutAnalysis) -> None:
        ctx = Context(now=self.clock(), stage_weights=[s.weight_pct for s in policy.stages],
                      pairs_total=analysis.pairs_total, categories=self.categories)
        transitions: dict[Action, Callable[[AliasState], rollout.Result]] = {
            Action.PROMOTE: lambda a: rollout.advance(a, ctx),
            Action.COMPLETE: lambda a: rollout.complete(a, ctx),
            Action.ROLLBACK: lambda a: rollout.rollback(a, ctx),
            Action.PIN: lambda a: rollout.pin(a, d.category or "", ctx),
            Action.INCONCLUSIVE: lambda a: rollout.mark_inconclusive(a, ctx),
        }
        numbers = {c: {k: getattr(r, k) for k in ("n", "wins", "ties", "losses", "estimate", "lower", "upper",
                                                  "log_evalue", "threshold", "tolerance", "gate_margin", "rejected",
                                                  "cleared")} for c, r in analysis.categories.items()}
        extra = {"decision": d.action.value, "category": d.category, "epoch": self.epoch, "categories": numbers,
                 "guards": {n: r.detail for n, r in analysis.guards.items()},
                 **({"details": d.details} if d.details else {})}
        try:
            await self.rollouts.apply(alias.name, transitions[d.action], actor=f"controller:{self.instance}",
                                      by="controller", reason=d.reason, expected_revision=alias.revision,
                                      extra=extra, fence=self._fence())
        except (Refused, Fenced) as e:  # an operator or another leader changed it since we looked
            log.info("%s: %s not applied (%s); re-evaluating next round", alias.name, d.action.value, e)
            return
        m.CONTROLLER_DECISIONS.labels(alias.name, d.action.value).inc()
        if "guard" in d.details:
            m.GUARD_TRIPS.labels(alias.name, str(d.details["guard"])).inc()
        m.CONTROLLER_LAST_DECISION.labels(alias.name).set(self.clock())
        log.warning("%s: %s (%s)", alias.name, d.action.value, d.reason)


