"""Suite files: versioned, content-hashed JSONL of prompts per category. Pure.

A suite file is JSON Lines. An optional first line `{"suite": {...}}` names it (id, hash, format, source);
every other line is one item:

    {"id": "q1", "category": "math", "messages": [{"role": "user", "content": "..."}],
     "reference": "42", "grader": "numeric"}

`prompt` (a string) may stand for `messages`. MT-Bench's question format loads as is: `question_id`,
`category`, `turns` (user turns, answered one after another) and an optional `reference` list (its last
element is the final turn's reference). The hash covers the items only (canonical JSON), so the same items
give the same hash and id whatever the file's name or header say.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError, model_validator

FORMAT = 1


class SuiteError(ValueError):
    """A suite file that cannot be read: says which line and why."""


class SuiteItem(BaseModel):
    id: str
    category: str = Field(min_length=1)
    turns: list[str] = Field(default_factory=list)  # user turns, answered in order (MT-Bench)
    messages: list[dict[str, Any]] | None = None  # a conversation sent whole, answered once
    reference: str | None = None
    grader: str | dict[str, Any] | None = None  # None: the judge decides (graders.py)

    @model_validator(mode="before")
    @classmethod
    def _formats(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("an item is a JSON object")
        v = dict(v)
        if "id" not in v and "question_id" in v:  # MT-Bench
            v["id"] = str(v.pop("question_id"))
        elif "id" in v:
            v["id"] = str(v["id"])
        if isinstance(v.get("prompt"), str):
            v["turns"] = [v.pop("prompt")]
        ref = v.get("reference")
        if isinstance(ref, list):  # MT-Bench: one reference per turn; the final turn's is compared
            v["reference"] = str(ref[-1]) if ref else None
        elif ref is not None and not isinstance(ref, str):
            v["reference"] = orjson.dumps(ref).decode()
        return v

    @model_validator(mode="after")
    def _has_prompt(self) -> SuiteItem:
        if bool(self.turns) == bool(self.messages):
            raise ValueError("give exactly one of messages, prompt or turns")
        return self

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


class Suite(BaseModel):
    id: str
    hash: str
    items: list[SuiteItem]
    source: str = ""
    format: int = FORMAT

    @property
    def categories(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for it in self.items:
            out[it.category] += 1
        return dict(sorted(out.items()))


def items_hash(items: Sequence[SuiteItem]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(orjson.dumps(it.canonical(), option=orjson.OPT_SORT_KEYS))
        h.update(b"\n")
    return h.hexdigest()


def make_suite(name: str, items: Sequence[SuiteItem], source: str = "") -> Suite:
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SuiteError(f"item id {dup!r} appears more than once")
    if not items:
        raise SuiteError("the suite has no items")
    digest = items_hash(items)
    return Suite(id=f"{name}@{digest[:12]}", hash=digest, items=list(items), source=source)


def parse(text: str, name: str) -> Suite:
    """A suite from JSONL text (our format, with or without its header, or MT-Bench's questions)."""
    items: list[SuiteItem] = []
    source = ""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise SuiteError(f"line {n}: not JSON ({e})") from None
        if isinstance(raw, dict) and "suite" in raw and isinstance(raw["suite"], dict):
            name = str(raw["suite"].get("name") or name)
            source = str(raw["suite"].get("source") or "")
            continue
        try:
            items.append(SuiteItem.model_validate(raw))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise SuiteError(f"line {n}: {where + ': ' if where else ''}{first['msg']}") from None
    return make_suite(name, items, source)


def load(path: Path) -> Suite:
    return parse(path.read_text(encoding="utf-8"), path.stem.split("@")[0])


def dumps(suite: Suite) -> str:
    name = suite.id.split("@")[0]
    head = {"suite": {"name": name, "id": suite.id, "hash": suite.hash, "format": suite.format,
                      "source": suite.source, "items": len(suite.items), "categories": suite.categories}}
    lines = [orjson.dumps(head)] + [orjson.dumps(it.canonical()) for it in suite.items]
    return b"\n".join(lines).decode() + "\n"


def stratified(records: Iterable[Mapping[str, Any]], per_category: int, seed: int,
               categories: Sequence[str] | None = None) -> list[SuiteItem]:
    """Up to `per_category` items per category from captured pairs (judges/records.py: PairResult as
    dicts, already redacted), drawn with `seed`: the same records and seed give the same items, in the same
    order. Duplicate prompts count once. `categories` limits the draw (default: every category seen)."""
    by_cat: dict[str, dict[str, SuiteItem]] = defaultdict(dict)
    for r in records:
        cat = r.get("category")
        if not isinstance(cat, str) or (categories is not None and cat not in categories):
            continue
        messages = r.get("messages")
        if isinstance(messages, list) and messages:
            item = {"messages": messages}
        elif isinstance(r.get("question"), str) and r["question"].strip():
            item = {"turns": [r["question"]]}
        else:
            continue
        key = hashlib.blake2b(orjson.dumps(item, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
        by_cat[cat].setdefault(key, SuiteItem.model_validate(
            {"id": f"{cat}-{key}", "category": cat, "reference": r.get("reference"), **item}))
    rng = random.Random(seed)
    out: list[SuiteItem] = []
    for cat in sorted(by_cat):
        keys = sorted(by_cat[cat])  # a fixed order before the seeded draw: insertion order must not matter
        out += [by_cat[cat][k] for k in sorted(rng.sample(keys, min(per_category, len(keys))))]
    return out
