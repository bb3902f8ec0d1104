"""The layered decision, first match wins: explicit category from the client, config rules, the
embedding classifier, and `other` below the confidence threshold. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.classify.prompt import PromptParts
from router.classify.taxonomy import OTHER, CompiledRules

HEADER = "x-cliffguard-category"
# namespaced: OpenAI's `metadata` is the client's own, and a `category` key there may mean anything
METADATA_KEY = "cliffguard_category"


class InvalidCategory(ValueError):
    def __init__(self, value: str, allowed: tuple[str, ...], source: str) -> None:
        super().__init__(f"Invalid category {value!r} in {source}; allowed: {', '.join(allowed)}.")
        self.source = source


@dataclass(frozen=True, slots=True)
class Label:
    category: str
    confidence: float
    layer: str  # explicit | rule | embedding | threshold | unclassified


def explicit_category(headers: Mapping[str, str], body: Mapping[str, Any], allowed: tuple[str, ...]) -> str | None:
    """The client's own label (header or `metadata.cliffguard_category`); raises InvalidCategory for other
    values."""
    value = headers.get(HEADER)
    source = f"the {HEADER} header"
    if value is None:
        meta = body.get("metadata")
        if isinstance(meta, dict) and METADATA_KEY in meta:
            value, source = meta[METADATA_KEY], f"metadata.{METADATA_KEY}"
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise InvalidCategory(str(value), allowed, source)
    return value.strip().lower()


def decide_before_model(explicit: str | None, rules: CompiledRules, parts: PromptParts) -> Label | None:
    if explicit is not None:
        return Label(explicit, 1.0, "explicit")
    matched = rules.match(parts.system, parts.last_user)
    if matched is not None:
        return Label(matched, 1.0, "rule")
    if not parts.last_user.strip():
        return Label(OTHER, 1.0, "rule")
    return None


def threshold(category: str, confidence: float, min_confidence: float) -> Label:
    if confidence < min_confidence:
        return Label(OTHER, confidence, "threshold")
    return Label(category, confidence, "embedding")
