"""The shared rollout state: version records and each alias's current split, as stored in Redis.

Plain pydantic models serialised as JSON; the gateway keeps an immutable snapshot of them in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

BP_MAX = 10_000  # weights are in basis points: 10_000 = 100%


class Phase(StrEnum):
    """Where an alias's rollout is. The transitions between phases live in router/rollout.py."""

    MANUAL = "manual"  # an operator set the split by hand; the controller analyses it but never acts
    SHADOW = "shadow"  # a stage of weight 0: the candidate serves nobody, judged on shadow answers
    CANARY = "canary"  # a stage with weight: the candidate serves a share of the traffic
    INCONCLUSIVE = "inconclusive"  # a stage deadline passed undecided: the weight holds, evaluation goes on
    PAUSED = "paused"  # an operator paused it: the weight holds, the controller waits
    PROMOTED = "promoted"  # the candidate became stable
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def active(self) -> bool:
        """A managed rollout in progress."""
        return self in (Phase.SHADOW, Phase.CANARY, Phase.INCONCLUSIVE, Phase.PAUSED)

    @property
    def deciding(self) -> bool:
        """The controller decides in these phases."""
        return self in (Phase.SHADOW, Phase.CANARY, Phase.INCONCLUSIVE)


class PreflightStamp(BaseModel):
    """A candidate's latest preflight (`cliffguard preflight`), kept on its registry record: what
    `rollout start` checks. The full result is stored under its run id (judges/preflight/store.py)."""

    run_id: str
    suite_id: str
    suite_hash: str
    baseline: str  # the stable version it was compared with
    passed: bool
    failed: list[str] = Field(default_factory=list)  # categories that failed
    items: int = 0
    at: float = Field(default_factory=time.time)


class VersionRecord(BaseModel):
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    # set when retired by an operator, or when the version stops being used by any alias (superseded);
    # the record is pruned `retention_days` later and until then can be made stable again
    retired_at: float | None = None
    retired_reason: str | None = None
    preflight: PreflightStamp | None = None  # the latest preflight of this version as a candidate


class AliasState(BaseModel):
    """One public model name's live routing: stable, optional candidate and the candidate's weight."""

    name: str
    stable: str
    candidate: str | None = None
    weight_bp: int = Field(0, ge=0, le=BP_MAX)
    # salts the sticky hash so each rollout picks a fresh, independent set of early users
    rollout_id: str = ""
    # capability categories routed to stable whatever the weight (the classifier decides before routing)
    pinned_categories: list[str] = Field(default_factory=list)
    phase: Phase = Phase.MANUAL
    stage: int = 0
    rollout_started_at: float = 0.0
    stage_started_at: float = 0.0
    pairs_at_stage_start: int = 0  # judged pairs of the rollout when the stage began (its minimum counts from here)
    paused_from: Phase | None = None  # the phase to resume into
    paused_at: float | None = None
    previous_stable: str | None = None  # the stable before the last promotion or rollback-to
    # bumped by every transition of this alias: an action states the revision it was decided on, and a
    # stale or repeated one is refused (see router/rollout.py)
    revision: int = 0
    updated_at: float = Field(default_factory=time.time)

    def effective_weight_bp(self) -> int:
        return self.weight_bp if self.candidate else 0

    def with_split(self, candidate: str | None, weight_bp: int, now: float | None = None) -> AliasState:
        """The same alias with a new candidate and/or weight. Keeps the rollout id while the candidate
        stays the same, so raising the weight only moves users from stable to candidate."""
        now = time.time() if now is None else now
        same = candidate == self.candidate
        rollout_id = self.rollout_id if same else (f"{candidate}@{now:.0f}" if candidate else "")
        return self.model_copy(update={"candidate": candidate, "weight_bp": weight_bp if candidate else 0,
                                       "rollout_id": rollout_id, "updated_at": now})

    def describe(self) -> str:
        """What is live, in one line (for refusals and logs)."""
        cand = f"candidate {self.candidate} at {self.effective_weight_bp() / 100:g}%" if self.candidate else \
            "no candidate"
        return f"stable {self.stable}, {cand}, phase {self.phase.value}, revision {self.revision}"


@dataclass(frozen=True)
class RoutingSnapshot:
    """An immutable view of all versions and aliases at one state revision."""

    revision: int = 0
    versions: dict[str, VersionRecord] = field(default_factory=dict)
    aliases: dict[str, AliasState] = field(default_factory=dict)
