"""What a sampled request carries to the judges, and what a judged pair stores."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field

# request fields that are not generation parameters
_NOT_PARAMS = frozenset({"model", "messages", "prompt", "stream", "stream_options", "user", "metadata"})


class Sample(BaseModel):
    request_id: str
    alias: str
    rollout_id: str
    category: str
    endpoint: str  # chat | completions
    served_version: str
    served_arm: str  # stable | candidate
    stable: str
    candidate: str | None
    messages: list[dict[str, Any]] | None = None
    prompt: Any = None
    answer: str
    params: dict[str, Any] = Field(default_factory=dict)
    reference: str | None = None  # a reference answer the client sent (metadata.reference)
    ts: float

    def to_fields(self) -> dict[str, bytes]:
        return {"sample": self.model_dump_json().encode()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Sample:
        return cls.model_validate_json(fields[b"sample"])


def generation_params(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _NOT_PARAMS}


def answer_from_body(body: bytes, endpoint: str) -> str | None:
    try:
        choice = orjson.loads(body)["choices"][0]
        text = choice["message"]["content"] if endpoint == "chat" else choice["text"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


def answer_from_sse(chunks: list[bytes], endpoint: str) -> str | None:
    """The streamed answer (first choice), rebuilt from the forwarded SSE bytes."""
    parts: list[str] = []
    for line in b"".join(chunks).splitlines():
        if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
            continue
        try:
            choices = orjson.loads(line[5:]).get("choices") or []
        except (orjson.JSONDecodeError, AttributeError):
            continue
        for c in choices:
            if c.get("index", 0) != 0:
                continue
            piece = (c.get("delta") or {}).get("content") if endpoint == "chat" else c.get("text")
            if isinstance(piece, str):
                parts.append(piece)
    return "".join(parts) if parts else None


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
    stable_answer: str | None
    candidate_answer: str | None
    outcome: int | None = None  # candidate's side: +1 win, 0 tie, -1 loss (pairwise)
    rating: float | None = None  # single-answer mode, 1-10
    verdicts: list[str] = Field(default_factory=list)  # per order: A, B, tie
    position_consistent: bool | None = None
    judge_explanations: list[str] = Field(default_factory=list)
    judge_model: str
    ts: float
