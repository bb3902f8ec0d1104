"""The capability taxonomy: categories with descriptions, example prompts and regex rules. Pure.

The default taxonomy ships as `default_taxonomy.yaml`; a deployment adds its own categories (a
same-named one replaces the default) and may drop defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.classify.corpus import Example, corpus

OTHER = "other"
UNCLASSIFIED = "unclassified"  # the classifier was overloaded or failed: never a configured category
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class Rule(BaseModel):
    """A regex that decides the category when it matches (case-insensitive)."""

    model_config = ConfigDict(extra="forbid")
    pattern: str
    # not `on`: YAML 1.1 reads that key as the boolean true
    scope: Literal["last_user", "system", "any"] = "any"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regex: {e}") from None
        return v


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    examples: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


class TaxonomyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use_defaults: bool = True
    drop: list[str] = Field(default_factory=list, description="default categories to remove")
    categories: list[Category] = Field(default_factory=list, description="added or replacing categories")


@cache
def default_categories() -> tuple[Category, ...]:
    text = resources.files("router.classify").joinpath("default_taxonomy.yaml").read_text()
    return tuple(Category.model_validate(c) for c in yaml.safe_load(text)["categories"])


@dataclass(frozen=True)
class Taxonomy:
    categories: tuple[Category, ...]

    @classmethod
    def build(cls, cfg: TaxonomyConfig | None = None) -> Taxonomy:
        cfg = cfg or TaxonomyConfig()
        merged: dict[str, Category] = {}
        if cfg.use_defaults:
            merged = {c.name: c for c in default_categories() if c.name not in cfg.drop}
        for c in cfg.categories:
            merged[c.name] = c
        merged.setdefault(OTHER, Category(name=OTHER, description="anything else"))
        return cls(tuple(merged.values()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    def labels(self) -> tuple[str, ...]:
        """Every value a category metric label can take."""
        return (*self.names, UNCLASSIFIED)

    def training_set(self) -> list[Example]:
        """The shipped corpus for the default categories kept as they are, plus every category's
        description and examples (each one more single prompt)."""
        defaults = default_categories()
        rows = list(corpus(frozenset(c.name for c in self.categories if c in defaults)))
        for c in self.categories:
            for i, t in enumerate(([c.description] if c.description else []) + c.examples):
                rows.append(Example((("user", t),), c.name, f"taxonomy:{c.name}:{i}", "single"))
        return rows


@dataclass(frozen=True)
class CompiledRules:
    rules: tuple[tuple[str, str, re.Pattern[str]], ...]  # (category, scope, regex)

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> CompiledRules:
        return cls(tuple((c.name, r.scope, re.compile(r.pattern, re.IGNORECASE))
                         for c in taxonomy.categories for r in c.rules))

    def match(self, system: str, last_user: str) -> str | None:
        for name, scope, rx in self.rules:
            if (scope in ("system", "any") and system and rx.search(system)) or (
                scope in ("last_user", "any") and last_user and rx.search(last_user)
            ):
                return name
        return None
