"""Rollout policy: stages, minimums, deadlines, per-category tolerances (Kayenta-style: critical, muted,
must-have-data), operational guards, and what to do on a regression."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CategoryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tolerance: float = Field(0.02, gt=0, lt=1, description="largest acceptable drop of P(win) - P(loss)")
    critical: bool = Field(False, description="a breach rolls back at once, even with pin_category")
    muted: bool = Field(False, description="reported, never acted on (and spends no error budget)")
    must_have_data: bool = Field(False, description="promotion waits until this category has judged pairs")


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight_pct: float = Field(ge=0, le=100)


class Guard(BaseModel):
    """An operational limit relative to stable: trips when candidate > stable * ratio + slack."""

    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(1.5, ge=1)
    slack: float = Field(0.0, ge=0)
    min_requests: int = Field(50, ge=1, description="per version, before the guard is evaluated")


class Guards(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error_rate: Guard | None = Field(default_factory=lambda: Guard(ratio=2.0, slack=0.01))
    ttft_p95_s: Guard | None = Field(default_factory=lambda: Guard(ratio=1.5, slack=0.05))
    empty_rate: Guard | None = Field(default_factory=lambda: Guard(ratio=2.0, slack=0.02))


DEFAULT_STAGES = [Stage(name="shadow", weight_pct=0), Stage(name="1%", weight_pct=1), Stage(name="5%", weight_pct=5),
                  Stage(name="25%", weight_pct=25), Stage(name="50%", weight_pct=50),
                  Stage(name="100%", weight_pct=100)]


class RolloutPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[Stage] = Field(default_factory=lambda: [s.model_copy() for s in DEFAULT_STAGES])
    min_bake_s: float = Field(300.0, ge=0, description="minimum time in each stage")
    min_pairs_per_stage: int = Field(100, ge=0, description="judged pairs (all categories) per stage")
    stage_deadline_s: float = Field(6 * 3600.0, gt=0, description="undecided past it: inconclusive, hold")
    alpha: float = Field(0.05, gt=0, lt=1, description="chance of any false rollback, per rollout")
    design_effect: float = Field(-0.10, lt=0, description="the regression to catch fastest")
    default_category: CategoryPolicy = Field(default_factory=CategoryPolicy)
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)
    on_regression: Literal["rollback", "pin_category"] = "rollback"
    guards: Guards = Field(default_factory=Guards)

    @field_validator("stages")
    @classmethod
    def _ordered(cls, v: list[Stage]) -> list[Stage]:
        if not v:
            raise ValueError("at least one stage")
        weights = [s.weight_pct for s in v]
        if weights != sorted(weights):
            raise ValueError("stage weights must not decrease")
        return v

    def category(self, name: str) -> CategoryPolicy:
        return self.categories.get(name, self.default_category)

    def acting(self, names: list[str]) -> list[str]:
        return [n for n in names if not self.category(n).muted]


class ControllerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="run the controller inside `serve` (leader-elected)")
    interval_s: float = Field(2.0, gt=0, description="how often the leader evaluates")
    lease_s: float = Field(10.0, gt=0, description="leadership expires this long after the last renewal")
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)
    policies: dict[str, RolloutPolicy] = Field(default_factory=dict, description="per alias, replacing `policy`")
    webhooks: list[str] = Field(default_factory=list, description="URLs; JSON POST with Slack-compatible text")
    retention_days: float = Field(30.0, gt=0, description="versions no alias uses are kept this long")
    housekeeping_s: float = Field(300.0, gt=0, description="how often the leader retires and prunes versions")
