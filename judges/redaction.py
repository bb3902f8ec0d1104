"""Redaction of everything judging stores. Pure.

One rule for every record: each string anywhere in it (message content in any form, content parts,
tool-call arguments, tool results, the prompt, the reference, the answers, the judge's explanations, a
client's request id) goes through the patterns and the optional hook, except the fields the record names
as its own identifiers (our request id, alias, versions, category). Dictionary keys are structure, not
content, and are kept.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from judges.sampling import SamplingConfig

R = TypeVar("R", bound=BaseModel)

MASK = "[REDACTED]"


class Redactor:
    def __init__(self, patterns: list[str], hook: str | None = None) -> None:
        self.patterns = [re.compile(p) for p in patterns]
        self.hook: Callable[[str], str] | None = None
        if hook:
            module, _, name = hook.partition(":")
            self.hook = getattr(importlib.import_module(module), name)

    @classmethod
    def from_config(cls, cfg: SamplingConfig) -> Redactor:
        return cls(cfg.redact_patterns, cfg.redact_hook)

    def text(self, text: str) -> str:
        for p in self.patterns:
            text = p.sub(MASK, text)
        return self.hook(text) if self.hook else text

    def value(self, value: Any) -> Any:
        """Every string in a JSON-like value, at any depth."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def record(self, record: R, keep: frozenset[str]) -> R:
        """The record with every field but its identifiers (`keep`) redacted."""
        data = record.model_dump()
        return type(record).model_validate({k: v if k in keep else self.value(v) for k, v in data.items()})
