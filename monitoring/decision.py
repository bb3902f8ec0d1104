"""The controller's decision for one rollout at one moment. Pure: the live controller and the policy
simulator both call it, with the same inputs (phase, stage progress, per-category evidence, guards)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from monitoring.policy import Guard, RolloutPolicy
from monitoring.sequential import split_alpha


class Phase(StrEnum):
    SHADOW = "shadow"  # stage 0 when its weight is 0: the candidate serves nobody, judged on shadow answers
    CANARY = "canary"
    INCONCLUSIVE = "inconclusive"  # a stage deadline passed undecided: hold the weight, alert
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def final(self) -> bool:
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED)


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
    cleared: bool  # lower bound above -tolerance


@dataclass(frozen=True)
class GuardReading:
    candidate: float
    stable: float
    candidate_requests: int
    stable_requests: int


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
    """The error budget of each acting (non-muted) category."""
    return split_alpha(policy.alpha, len(policy.acting(categories)))


def _guard_tripped(name: str, g: Guard | None, r: GuardReading | None) -> str | None:
    if g is None or r is None or r.candidate_requests < g.min_requests or r.stable_requests < g.min_requests:
        return None
    limit = r.stable * g.ratio + g.slack
    return f"{name} {r.candidate:.4g} > limit {limit:.4g} (stable {r.stable:.4g})" if r.candidate > limit else None


def decide(policy: RolloutPolicy, progress: Progress, evidence: dict[str, Evidence], now: float,
           guards: dict[str, GuardReading] | None = None) -> Decision:
    if progress.phase.final or progress.phase == Phase.PAUSED:
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

    for name, reading in (guards or {}).items():
        tripped = _guard_tripped(name, getattr(policy.guards, name, None), reading)
        if tripped:
            return Decision(Action.ROLLBACK, f"guard tripped: {tripped}", details={"guard": name})

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
        waiting.append(f"not yet within tolerance: {', '.join(undecided)}")
    if not any(c in evidence and evidence[c].n > 0 for c in acting):
        waiting.append("no judged pairs yet")  # "every category cleared" must not hold vacuously
    if not waiting:
        last = progress.stage >= len(policy.stages) - 1
        return Decision(Action.COMPLETE if last else Action.PROMOTE,
                        "every acting category within tolerance, minimums met")
    if elapsed >= policy.stage_deadline_s and progress.phase != Phase.INCONCLUSIVE:
        return Decision(Action.INCONCLUSIVE, f"stage deadline passed undecided ({'; '.join(waiting)})")
    return Decision(Action.NONE, "; ".join(waiting))
