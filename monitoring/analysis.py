"""The analysis of one rollout at one moment: per-category statistics against the next stage's gate, the
guards, the candidate's exposure, and a time-to-decision estimate from the live traffic mix. Pure: the
controller computes it off the event loop (in a thread), only for categories whose counts changed (a
cache keyed by the counts), stores it in Redis, and every view (admin API, console, CLI, metrics, demo)
reads that stored result: what is shown is what is decided on.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from monitoring import guards as g
from monitoring.decision import Evidence, category_alpha
from monitoring.policy import RolloutPolicy
from monitoring.sequential import CategoryStats, CategoryTest, Counts, analyse
from router.state import AliasState


class CategoryReport(BaseModel):
    n: int
    wins: int
    ties: int
    losses: int
    estimate: float
    lower: float
    upper: float
    log_evalue: float
    threshold: float
    gate_threshold: float
    tolerance: float
    rejected: bool
    gate_margin: float
    cleared: bool
    pairs_to_gate: int | None
    pairs_to_rollback: int | None
    status: str  # regressed | gate met | collecting
    muted: bool
    pinned: bool
    pair_rate: float  # judged pairs per second over the rollout
    eta_s: float | None  # seconds until the gate clears at the current estimate and rate (None: not on track)
    inconsistent: int = 0  # pairs whose two judge orders disagreed (counted as ties)


class GuardReport(BaseModel):
    tripped: bool
    candidate: float
    candidate_lower: float
    stable: float
    stable_upper: float
    limit: float
    candidate_requests: int
    stable_requests: int
    edge_s: float | None
    window_minutes: int | None = None
    detail: str


class RolloutAnalysis(BaseModel):
    alias: str
    rollout_id: str
    revision: int  # the alias revision analysed
    phase: str
    stage: int
    stable: str
    candidate: str
    next_gate: float  # what the next stage needs: lower bound above -next_gate in every acting category
    categories: dict[str, CategoryReport]
    guards: dict[str, GuardReport]
    exposure: dict[str, int]  # requests the candidate served to users, per category
    pairs_total: int
    pairs_in_stage: int
    eta_s: float | None  # until the next gate, bake and minimums are all met (None: not on track)
    decision: str = ""  # what the controller decided on it (or why it waits)
    computed_at: float

    def evidence(self) -> dict[str, Evidence]:
        return {c: Evidence(r.n, r.rejected, r.cleared) for c, r in self.categories.items()}


@lru_cache(maxsize=8192)
def category_stats(wins: int, ties: int, losses: int, tolerance: float, rollback_alpha: float,
                   promotion_alpha: float, design_effect: float, final_margin: float,
                   gate_margin: float) -> CategoryStats:
    """The statistics of one category's counts; cached, so an unchanged category costs nothing."""
    test = CategoryTest.design(tolerance, rollback_alpha, promotion_alpha, design_effect, final_margin)
    return analyse(Counts(wins, ties, losses), test, gate_margin)


def analyse_rollout(policy: RolloutPolicy, categories: list[str], alias: AliasState,
                    stats: Mapping[str, Mapping[str, int]], guard_hash: Mapping[Any, Any], now: float,
                    recent_hashes: list[Mapping[Any, Any]] | None = None) -> RolloutAnalysis:
    """`categories`: the configured taxonomy (the rollback test's error budget is split over its acting
    ones, whatever has data so far); `stats`: the judges' counts per category; `guard_hash`: the guard
    counters' Redis hash for this rollout."""
    alpha = category_alpha(policy, categories)
    nxt = alias.stage + 1
    elapsed = max(now - (alias.rollout_started_at or alias.stage_started_at or now), 1.0)
    reports: dict[str, CategoryReport] = {}
    for cat, v in sorted(stats.items()):
        if not v.get("n"):
            continue
        cp = policy.category(cat)
        gate = policy.gate_margin(nxt, cat)
        s = category_stats(v.get("wins", 0), v.get("ties", 0), v.get("losses", 0), cp.tolerance, alpha,
                           policy.alpha, policy.design_effect, policy.final_margin, gate)
        rate = s.n / elapsed
        eta = 0.0 if s.cleared else (s.pairs_to_gate / rate if s.pairs_to_gate is not None and rate > 0 else None)
        reports[cat] = CategoryReport(**{k: getattr(s, k) for k in CategoryStats.__dataclass_fields__},
                                      status=s.status, muted=cp.muted, pinned=cat in alias.pinned_categories,
                                      pair_rate=rate, eta_s=eta, inconsistent=v.get("inconsistent", 0))
    counts = g.parse(guard_hash)
    candidate = alias.candidate or ""
    recent = g.merge(recent_hashes) if recent_hashes is not None else None
    guards = g.evaluate(policy.guards, counts, alias.stable, candidate, recent) if candidate else {}
    pairs_total = sum(r.n for r in reports.values())
    in_stage = pairs_total - alias.pairs_at_stage_start
    return RolloutAnalysis(
        alias=alias.name, rollout_id=alias.rollout_id, revision=alias.revision, phase=alias.phase.value,
        stage=alias.stage, stable=alias.stable, candidate=candidate, next_gate=policy.stage_margin(nxt),
        categories=reports,
        guards={n: GuardReport(**{k: getattr(r, k) for k in g.GuardResult.__dataclass_fields__ if k != "name"},
                               detail=r.detail) for n, r in guards.items()},
        exposure=dict(counts.get(candidate, g.VersionCounts()).served) if candidate else {},
        pairs_total=pairs_total, pairs_in_stage=in_stage,
        eta_s=_eta(policy, alias, reports, in_stage, now), computed_at=now)


def _eta(policy: RolloutPolicy, alias: AliasState, reports: dict[str, CategoryReport], in_stage: int,
         now: float) -> float | None:
    """Seconds until everything the next stage needs is there, if the traffic mix and the estimates hold."""
    acting = {c: r for c, r in reports.items() if not r.muted and not r.pinned}
    missing = [c for c, cp in policy.categories.items() if cp.must_have_data and not cp.muted
               and c not in acting and c not in alias.pinned_categories]
    if missing or not acting:
        return None
    waits = [max(policy.min_bake_s - (now - alias.stage_started_at), 0.0)]
    total_rate = sum(r.pair_rate for r in acting.values())
    short = policy.min_pairs_per_stage - in_stage
    if short > 0:
        waits.append(short / total_rate if total_rate > 0 else float("inf"))
    for r in acting.values():
        if r.eta_s is None:
            return None
        waits.append(r.eta_s)
    worst = max(waits)
    return worst if worst != float("inf") else None
