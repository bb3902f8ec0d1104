"""The shared rollout state: version records and each alias's current split, as stored in Redis.

Plain pydantic models serialised as JSON; the gateway keeps an immutable snapshot of them in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

BP_MAX = 10_000  # weights are in basis points: 10_000 = 100%


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
    # the controller's view of the rollout; "manual" means an operator set the split and the controller
    # leaves it alone (see monitoring.decision.Phase for the managed phases)
    phase: str = "manual"
    stage: int = 0
    stage_started_at: float = 0.0
    pairs_at_stage_start: int = 0
    paused_from: str | None = None  # the phase to resume into
    previous_stable: str | None = None  # the stable before the last promotion or rollback-to
    updated_at: float = Field(default_factory=time.time)

    def effective_weight_bp(self) -> int:
        return self.weight_bp if self.candidate else 0

    def with_split(self, candidate: str | None, weight_bp: int) -> AliasState:
        """The same alias with a new candidate and/or weight. Keeps the rollout id while the candidate
        stays the same, so raising the weight only moves users from stable to candidate."""
        same = candidate == self.candidate
        rollout_id = self.rollout_id if same else (f"{candidate}@{time.time():.0f}" if candidate else "")
        return self.model_copy(update={"candidate": candidate, "weight_bp": weight_bp if candidate else 0,
                                       "rollout_id": rollout_id, "updated_at": time.time()})


@dataclass(frozen=True)
class RoutingSnapshot:
    """An immutable view of all versions and aliases at one state revision."""

    revision: int = 0
    versions: dict[str, VersionRecord] = field(default_factory=dict)
    aliases: dict[str, AliasState] = field(default_factory=dict)
