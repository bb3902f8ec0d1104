"""What a preflight stores: each scored item, and the run's result."""

from __future__ import annotations

from pydantic import BaseModel, Field

from monitoring.preflight import PreflightVerdict

# fields stored unredacted (the rest goes through judges/redaction.py)
ITEM_IDENTIFIERS = frozenset({"id", "category", "outcome", "decided_by", "verdicts", "candidate_passed",
                              "stable_passed", "consistent"})


class ItemResult(BaseModel):
    id: str
    category: str
    question: str
    reference: str | None = None
    stable_answer: str
    candidate_answer: str
    outcome: int  # for the candidate: +1, 0, -1
    decided_by: str  # judge | identical | grader:<name>
    consistent: bool = True
    verdicts: list[str] = Field(default_factory=list)
    explanations: list[str] = Field(default_factory=list)
    candidate_passed: bool | None = None  # programmatic checks only
    stable_passed: bool | None = None


class PreflightResult(BaseModel):
    run_id: str
    alias: str
    suite_id: str
    suite_hash: str
    suite_source: str = ""
    stable: str
    candidate: str
    judge_model: str
    started_at: float
    finished_at: float
    verdict: PreflightVerdict
    errors: list[str] = Field(default_factory=list)  # items that could not be scored, and why
    items: list[ItemResult]
