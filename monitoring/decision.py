"""The controller's decision for one rollout at one moment. Pure: the live controller and the policy
simulator both call it, with the same inputs (phase, stage progress, per-category evidence, guards)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from monitoring.policy import RolloutPolicy
from monitoring.sequential import split_alpha
from router.state import Phase

__all__ = ["Action", "Decision", "Evidence", "Phase", "Progress", "category_alpha", "decide"]


class Action(StrEnum):
    NONE = "none"
    PROMOTE = "promote"  # to the next stage
    COMPLETE = "complete"  # past the last stage: the candidate becomes stable
    ROLLBACK = "rollback"
    PIN = "pin_category"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Evidence:
    n: int
    rejected: bool  # worse than its tolerance, established
    cleared: bool  # the next stage's gate is met (lower bound above -margin)


class GuardVerdict(Protocol):
    """A guard's comparison of candidate and stable (monitoring/guards.py)."""

    @property
    def tripped(self) -> bool: ...

    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class Progress:
    phase: Phase
    stage: int
    stage_started_at: float
    pairs_at_stage_start: int = 0
    pinned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    category: str | None = None
    details: dict[str, object] = field(default_factory=dict)


def category_alpha(policy: RolloutPolicy, categories: list[str]) -> float:
    """The rollback test's error budget of each acting (non-muted) category: split over the configured
    categories (not those that happen to have data), since any one of them rolls back alone."""
    return split_alpha(policy.alpha, len(policy.acting(categories)))


def decide(policy: RolloutPolicy, progress: Progress, evidence: dict[str, Evidence], now: float,
           guards: Mapping[str, GuardVerdict] | None = None) -> Decision:
    if not progress.phase.deciding:
        return Decision(Action.NONE, f"{progress.phase.value}: nothing to decide")
    names = sorted(set(evidence) | {c for c, p in policy.categories.items() if p.must_have_data})
    acting = [c for c in policy.acting(names) if c not in progress.pinned]

    regressed = [c for c in acting if c in evidence and evidence[c].rejected]
    if regressed:
        critical = [c for c in regressed if policy.category(c).critical]
        cat = (critical or regressed)[0]
        if policy.on_regression == "pin_category" and not critical:
            return Decision(Action.PIN, f"category {cat} regressed past its tolerance: pinned to stable", cat)
        return Decision(Action.ROLLBACK, f"category {cat} regressed past its tolerance", cat)

    for name, g in (guards or {}).items():
        if g.tripped:
            return Decision(Action.ROLLBACK, f"guard tripped: {g.detail}", details={"guard": name})

    total = sum(e.n for e in evidence.values())
    elapsed = now - progress.stage_started_at
    waiting = []
    if elapsed < policy.min_bake_s:
        waiting.append(f"bake {elapsed:.0f}/{policy.min_bake_s:.0f}s")
    if total - progress.pairs_at_stage_start < policy.min_pairs_per_stage:
        waiting.append(f"pairs {total - progress.pairs_at_stage_start}/{policy.min_pairs_per_stage}")
    missing = [c for c in acting
               if policy.category(c).must_have_data and (c not in evidence or evidence[c].n == 0)]
    if missing:
        waiting.append(f"no data yet: {', '.join(missing)}")
    undecided = [c for c in acting if c in evidence and evidence[c].n > 0 and not evidence[c].cleared]
    if undecided:
        waiting.append(f"gate not met yet: {', '.join(undecided)}")
    if not any(c in evidence and evidence[c].n > 0 for c in acting):
        waiting.append("no judged pairs yet")  # "every category cleared" must not hold vacuously
    if not waiting:
        last = progress.stage >= len(policy.stages) - 1
        return Decision(Action.COMPLETE if last else Action.PROMOTE,
                        "every acting category met the next stage's gate, minimums met")
    if elapsed >= policy.stage_deadline_s and progress.phase != Phase.INCONCLUSIVE:
        return Decision(Action.INCONCLUSIVE, f"stage deadline passed undecided ({'; '.join(waiting)})")
    return Decision(Action.NONE, "; ".join(waiting))
