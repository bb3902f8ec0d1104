"""What a sampled request carries to the judges, and what a judged pair stores."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from judges.answers import Answer

# request fields that are not generation parameters
_NOT_PARAMS = frozenset({"model", "messages", "prompt", "input", "stream", "stream_options", "user", "metadata"})

# our own identifiers and labels: the only fields stored unredacted (judges/redaction.py)
SAMPLE_IDENTIFIERS = frozenset({"request_id", "alias", "rollout_id", "category", "endpoint", "served_version",
                                "served_arm", "stable", "candidate", "ts"})
PAIR_IDENTIFIERS = frozenset({"request_id", "alias", "rollout_id", "category", "mode", "stable", "candidate",
                              "outcome", "decided_by", "rating", "verdicts", "position_consistent", "judge_model",
                              "ts"})


class Sample(BaseModel):
    request_id: str  # the gateway's own id: decides sampling and exactly-once recording
    alias: str
    rollout_id: str
    category: str
    endpoint: str  # chat | completions | responses
    served_version: str
    served_arm: str  # stable | candidate
    stable: str
    candidate: str | None
    messages: list[dict[str, Any]] | None = None
    prompt: Any = None
    input: Any = None  # the Responses API's input (its instructions are a parameter)
    answer: Answer
    params: dict[str, Any] = Field(default_factory=dict)
    reference: str | None = None  # a reference answer the client sent (metadata.reference)
    client_request_id: str | None = None  # the client's X-Request-Id, kept for correlation only
    ts: float

    def to_fields(self) -> dict[str, bytes]:
        return {"sample": self.model_dump_json().encode()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Sample:
        return cls.model_validate_json(fields[b"sample"])


def generation_params(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _NOT_PARAMS}


class PairResult(BaseModel):
    """A judged pair, stored with a TTL for review and export."""

    request_id: str
    alias: str
    rollout_id: str
    category: str
    mode: str  # pairwise | single
    stable: str
    candidate: str | None
    question: str
    stable_answer: Answer | None
    candidate_answer: Answer | None
    outcome: int | None = None  # candidate's side: +1 win, 0 tie, -1 loss (pairwise)
    decided_by: str = "judge"  # judge | identical (a tie without a judge call) | candidate_failed (a loss)
    rating: float | None = None  # single-answer mode, 1-10
    verdicts: list[str] = Field(default_factory=list)  # per order: A, B, tie
    position_consistent: bool | None = None
    judge_explanations: list[str] = Field(default_factory=list)
    judge_model: str
    client_request_id: str | None = None
    ts: float
    # the conversation as the client sent it (chat), and its reference: what `cliffguard suite build` draws
    messages: list[dict[str, Any]] | None = None
    reference: str | None = None
