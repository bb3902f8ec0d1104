"""Rollout metrics computed on scrape, in every gateway process, from what that process already holds: the
live routing state (phase, stage, weight, pinned categories) and its copy of the controller's stored
analyses (per-category estimates, bounds, test statistic, gates, time to decision, exposure, guards).

Unlike gauges set by the leader, these series exist only while a rollout does: after a rollback or a
completion they vanish, so the alerts on them resolve, and a leader that died leaves nothing stale behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError
from redis.exceptions import RedisError

from monitoring.analysis import RolloutAnalysis
from router.live_state import LiveState
from router.state import BP_MAX, Phase
from router.store import StateStore

log = logging.getLogger("cliffguard.rollout_metrics")


class AnalysisMirror:
    """This process's copy of the controller's latest analyses (`P:analysis`), refreshed in the background;
    the admin API, the console and the metrics read it, never the statistics themselves."""

    def __init__(self, store: StateStore, refresh_s: float = 1.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.latest: dict[str, RolloutAnalysis] = {}
        self._task: asyncio.Task[None] | None = None

    def current(self, state: LiveState, alias: str) -> RolloutAnalysis | None:
        """The analysis of the alias's live rollout (not of an earlier one)."""
        a = state.snapshot.aliases.get(alias)
        r = self.latest.get(alias)
        return r if a is not None and r is not None and r.rollout_id == a.rollout_id and a.candidate else None

    async def refresh(self) -> None:
        latest = {}
        for alias, raw in (await self.store.analyses()).items():
            try:
                latest[alias] = RolloutAnalysis.model_validate_json(raw)
            except ValidationError:  # written by another version of cliffguard: skip, never crash
                log.debug("unreadable analysis of %s", alias)
        self.latest = latest

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cliffguard-analysis-mirror")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(RedisError, OSError):
                await self.refresh()
            await asyncio.sleep(self.refresh_s)


_PHASES = [p.value for p in Phase]


class RolloutCollector(Collector):
    def __init__(self, state: LiveState, mirror: AnalysisMirror) -> None:
        self.state = state
        self.mirror = mirror

    def collect(self) -> Iterable[Metric]:
        snap = self.state.snapshot
        phase = GaugeMetricFamily("cliffguard_rollout_phase", "1 for the alias's current phase.",
                                  labels=["alias", "phase"])
        stage = GaugeMetricFamily("cliffguard_rollout_stage", "Index of the current stage.", labels=["alias"])
        weight = GaugeMetricFamily("cliffguard_rollout_weight_ratio", "Candidate share of traffic (0..1).",
                                   labels=["alias"])
        pinned = GaugeMetricFamily("cliffguard_rollout_pinned_categories", "Categories pinned to stable.",
                                   labels=["alias"])
        for a in snap.aliases.values():
            for p in _PHASES:
                phase.add_metric([a.name, p], 1.0 if a.phase == p else 0.0)
            stage.add_metric([a.name], a.stage)
            weight.add_metric([a.name], a.effective_weight_bp() / BP_MAX)
            pinned.add_metric([a.name], len(a.pinned_categories))
        yield from (phase, stage, weight, pinned)
        yield from self._analysis()

    def _analysis(self) -> Iterable[Metric]:
        def fam(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["alias", *labels])

        pairs = fam("cliffguard_category_judged_pairs", "Judged pairs in the current rollout.", "category")
        outcomes = fam("cliffguard_category_outcomes", "Wins, ties and losses of the candidate in the current "
                       "rollout.", "category", "outcome")
        estimate = fam("cliffguard_category_estimate", "Observed P(win) - P(loss) of the candidate.", "category")
        lower = fam("cliffguard_category_lower_bound", "Anytime-valid lower bound (the promotion gates read it).",
                    "category")
        upper = fam("cliffguard_category_upper_bound", "Anytime-valid upper bound (below -tolerance: rollback).",
                    "category")
        stat = fam("cliffguard_category_test_statistic", "log e-value of 'worse than tolerated'.", "category")
        thr = fam("cliffguard_category_test_threshold", "log(1/alpha_k): rollback at or above it.", "category")
        tol = fam("cliffguard_category_tolerance", "The category's tolerance (the regression line is minus this).",
                  "category")
        gate = fam("cliffguard_category_gate_margin", "What the next stage needs: lower bound above minus this.",
                   "category")
        needed = fam("cliffguard_category_pairs_needed", "Further judged pairs until the next gate clears at the "
                     "current estimate (-1: not on track, or met).", "category")
        eta_c = fam("cliffguard_category_eta_seconds", "Estimated seconds until the category meets the next "
                    "gate at the current estimate and pair rate (-1: not on track).", "category")
        exposure = fam("cliffguard_category_candidate_requests", "Requests the candidate served to users in "
                       "this rollout, per category (its exposure).", "category")
        eta = fam("cliffguard_rollout_eta_seconds", "Estimated seconds until the next stage can be entered "
                  "(-1: not on track).")
        guard = fam("cliffguard_rollout_guard_margin", "A guard's candidate lower bound minus its limit "
                    "(above 0: tripped).", "guard")
        for name in self.state.snapshot.aliases:
            r = self.mirror.current(self.state, name)
            if r is None:
                continue
            eta.add_metric([name], -1.0 if r.eta_s is None else r.eta_s)
            for cat, c in r.categories.items():
                pairs.add_metric([name, cat], c.n)
                for o, v in (("wins", c.wins), ("ties", c.ties), ("losses", c.losses)):
                    outcomes.add_metric([name, cat, o], v)
                estimate.add_metric([name, cat], c.estimate)
                lower.add_metric([name, cat], c.lower)
                upper.add_metric([name, cat], c.upper)
                stat.add_metric([name, cat], c.log_evalue)
                thr.add_metric([name, cat], c.threshold)
                tol.add_metric([name, cat], c.tolerance)
                gate.add_metric([name, cat], c.gate_margin)
                needed.add_metric([name, cat], -1.0 if c.pairs_to_gate is None else c.pairs_to_gate)
                eta_c.add_metric([name, cat], -1.0 if c.eta_s is None else c.eta_s)
            for cat, n in r.exposure.items():
                exposure.add_metric([name, cat], n)
            for gname, gr in r.guards.items():
                guard.add_metric([name, gname], gr.candidate_lower - gr.limit)
        yield from (pairs, outcomes, estimate, lower, upper, stat, thr, tol, gate, needed, eta_c, exposure, eta, guard)
