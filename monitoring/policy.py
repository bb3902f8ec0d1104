"""Rollout policy: stages, minimums, deadlines, per-category tolerances (Kayenta-style: critical, muted,
must-have-data), operational guards, and what to do on a regression."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    margin: float | None = Field(
        None, gt=0, lt=1, description="to enter this stage, every acting category must be shown (anytime-valid "
        "lower bound) no worse than stable by more than this; default: from the stage's weight, first_margin "
        "at 1% or less down to final_margin at 100%")


class Guard(BaseModel):
    """An operational limit relative to stable, on a rate: trips when the candidate's rate is, with
    confidence (anytime-valid bounds on both rates), above stable's rate * ratio + slack."""

    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(1.5, ge=1)
    slack: float = Field(0.0, ge=0)
    min_requests: int = Field(50, ge=1, description="per version, before the guard is evaluated")


class Guards(BaseModel):
    """Each guard compares rates of the two versions. `ttft` and `latency` compare, at every bucket edge of
    their histograms, the share of requests slower than the edge."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(0.01, gt=0, lt=1, description="chance of a false trip, per guard and rollout")
    window_minutes: int = Field(5, ge=1, le=50, description="error and empty-answer rates are also compared over "
                                "the last minutes, so a candidate failing after a long good run trips at once")
    error_rate: Guard | None = Field(default_factory=lambda: Guard(ratio=2.0, slack=0.01))
    empty_rate: Guard | None = Field(default_factory=lambda: Guard(ratio=2.0, slack=0.02))
    ttft: Guard | None = Field(default_factory=lambda: Guard(ratio=1.5, slack=0.02))
    latency: Guard | None = Field(default_factory=lambda: Guard(ratio=2.0, slack=0.05))
    negative_feedback: Guard | None = Field(
        None, description="off unless set: the candidate's share of negative user feedback (POST /v1/feedback) "
        "against stable's; min_requests counts feedback, not requests")

    def active(self) -> dict[str, Guard]:
        return {n: g for n in GUARD_NAMES if (g := getattr(self, n)) is not None}


GUARD_NAMES = ("error_rate", "empty_rate", "ttft", "latency", "negative_feedback")


class PreflightPolicy(BaseModel):
    """The audit before any user sees a candidate (`cliffguard preflight`): per-category thresholds on
    P(win) - P(loss) of the candidate against stable over a suite, and whether `rollout start` needs it."""

    model_config = ConfigDict(extra="forbid")
    required: bool = Field(False, description="`rollout start` refuses a candidate without a passed preflight "
                                              "against the alias's stable (--force with a reason overrides)")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per category: the largest drop "
                                         "accepted; default: the category's rollout tolerance")
    fail_on: Literal["estimate", "established"] = Field(
        "estimate", description="estimate: a category fails when its estimate is below -threshold (a breach at "
        "face value); established: only when its anytime-valid upper bound is (the breach is shown)")
    min_items: int = Field(1, ge=1, description="a category with fewer scored items fails (nothing to show)")
    design_effect: float = Field(-0.3, lt=0, description="the regression a suite's intervals are sized to show "
                                 "fastest: a suite has tens of items per category, not thousands of pairs, so "
                                 "its bets are bolder than the rollout's (they shape power, never validity)")


DEFAULT_STAGES = [Stage(name="shadow", weight_pct=0), Stage(name="1%", weight_pct=1), Stage(name="5%", weight_pct=5),
                  Stage(name="25%", weight_pct=25), Stage(name="50%", weight_pct=50),
                  Stage(name="100%", weight_pct=100)]


class RolloutPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[Stage] = Field(default_factory=lambda: [s.model_copy() for s in DEFAULT_STAGES])
    min_bake_s: float = Field(300.0, ge=0, description="minimum time in each stage")
    min_pairs_per_stage: int = Field(100, ge=0, description="judged pairs (all categories) per stage")
    stage_deadline_s: float = Field(6 * 3600.0, gt=0, description="undecided past it: inconclusive, hold")
    alpha: float = Field(0.05, gt=0, lt=1, description="chance of any false rollback, and of any false "
                                                       "promotion, per rollout")
    design_effect: float = Field(-0.10, lt=0, description="the regression to catch fastest")
    first_margin: float = Field(0.10, gt=0, lt=1, description="what a candidate must be shown to be no worse "
                                                              "than before it serves 1% of traffic")
    final_margin: float = Field(0.05, gt=0, lt=1, description="what it must be shown to be no worse than "
                                                              "before it serves everyone and becomes stable")
    default_category: CategoryPolicy = Field(default_factory=CategoryPolicy)
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)
    on_regression: Literal["rollback", "pin_category"] = "rollback"
    guards: Guards = Field(default_factory=Guards)
    preflight: PreflightPolicy = Field(default_factory=PreflightPolicy)

    @field_validator("stages")
    @classmethod
    def _ordered(cls, v: list[Stage]) -> list[Stage]:
        if not v:
            raise ValueError("at least one stage")
        weights = [s.weight_pct for s in v]
        if weights != sorted(weights):
            raise ValueError("stage weights must not decrease")
        return v

    @model_validator(mode="after")
    def _margins(self) -> RolloutPolicy:
        if self.final_margin > self.first_margin:
            raise ValueError("final_margin must not exceed first_margin")
        margins = [self.stage_margin(i) for i in range(1, len(self.stages))]
        if margins != sorted(margins, reverse=True):
            raise ValueError("stage margins must not grow as the weight grows")
        return self

    def category(self, name: str) -> CategoryPolicy:
        return self.categories.get(name, self.default_category)

    def stage_margin(self, stage: int) -> float:
        """What entering `stage` needs (stage == len(stages): completing, the candidate becomes stable).
        Unless set, it falls from first_margin at 1% exposure or less to final_margin at 100%, linearly in
        log(weight): the harm a stage can do is its weight times the regression not yet ruled out, and the
        price of ruling out a margin grows as 1/margin**2, so loose early gates cost few pairs."""
        if stage >= len(self.stages):
            return min(self.final_margin, self.stage_margin(len(self.stages) - 1))
        explicit = self.stages[stage].margin
        if explicit is not None:
            return explicit
        w = max(self.stages[stage].weight_pct, 1.0)
        frac = math.log(w) / math.log(100.0)  # 0 at 1%, 1 at 100%
        return self.first_margin + frac * (self.final_margin - self.first_margin)

    def gate_margin(self, stage: int, category: str) -> float:
        """A category's gate is never stricter than its own tolerance."""
        return max(self.stage_margin(stage), self.category(category).tolerance)

    def preflight_threshold(self, category: str) -> float:
        """A preflight threshold defaults to the rollout's tolerance for the category."""
        return self.preflight.thresholds.get(category, self.category(category).tolerance)

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
