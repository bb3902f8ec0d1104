"""Programmatic checks for items that need no judge. Pure (a user's grader aside).

A grader is named in the item (or for the whole suite):
- `"exact"`: the answer equals the reference (case, surrounding whitespace and runs of spaces ignored);
- `"numeric"` or `{"type": "numeric", "tolerance": 1e-6}`: the last number in the answer equals the
  reference's number (relative tolerance; thousands separators ignored);
- `"json"`: the answer is JSON (a ```json fence around it is allowed);
- `{"type": "json_schema", "schema": {...}}`: the answer is JSON valid against the schema;
- `{"type": "regex", "pattern": "..."}`: the pattern is found in the answer;
- `"package.module:function"`: called as `function(answer: str, item: dict) -> bool`.

Each answer passes or fails on its own; the pair's outcome for the candidate is +1 when only the
candidate passes, -1 when only stable does, 0 otherwise: the same X in {+1, 0, -1} as a judged pair, so
the same statistics apply.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.S)

Check = Callable[[str, dict[str, Any]], bool]


class GraderError(ValueError):
    """A grader spec that cannot be used (unknown type, bad schema or pattern, missing reference)."""


@dataclass(frozen=True)
class Grader:
    name: str
    check: Check

    def outcome(self, candidate: str, stable: str, item: dict[str, Any]) -> tuple[int, bool, bool]:
        """(the candidate's outcome, whether the candidate passed, whether stable passed)."""
        c, s = bool(self.check(candidate, item)), bool(self.check(stable, item))
        return int(c) - int(s), c, s


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def number(text: str) -> float | None:
    """The last number written in the text."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _json(text: str) -> Any:
    m = _FENCE.match(text)
    return orjson.loads(m.group(1) if m else text)


def _reference(item: dict[str, Any], kind: str) -> str:
    ref = item.get("reference")
    if not isinstance(ref, str):
        raise GraderError(f"the {kind} grader needs a reference answer (item {item.get('id')!r})")
    return ref


def _exact(answer: str, item: dict[str, Any]) -> bool:
    return _norm(answer) == _norm(_reference(item, "exact"))


def _numeric(tolerance: float) -> Check:
    def check(answer: str, item: dict[str, Any]) -> bool:
        want = number(_reference(item, "numeric"))
        if want is None:
            raise GraderError(f"no number in the reference of item {item.get('id')!r}")
        got = number(answer)
        return got is not None and math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance)
    return check


def _valid_json(answer: str, item: dict[str, Any]) -> bool:
    try:
        _json(answer)
    except orjson.JSONDecodeError:
        return False
    return True


def _schema(schema: dict[str, Any]) -> Check:
    try:
        validator = jsonschema.Draft202012Validator(schema)
        validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise GraderError(f"invalid JSON schema: {e.message}") from None

    def check(answer: str, item: dict[str, Any]) -> bool:
        try:
            return bool(validator.is_valid(_json(answer)))
        except orjson.JSONDecodeError:
            return False
    return check


def _regex(pattern: str) -> Check:
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise GraderError(f"invalid regex {pattern!r}: {e}") from None
    return lambda answer, item: rx.search(answer) is not None


def _user(path: str) -> Check:
    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise GraderError(f"cannot load grader {path!r}: {e}") from None
    if not callable(fn):
        raise GraderError(f"grader {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def build(spec: str | dict[str, Any]) -> Grader:
    """A grader from its spec (see the module's doc)."""
    if isinstance(spec, str):
        if ":" in spec:
            return Grader(spec, _user(spec))
        spec = {"type": spec}
    kind = spec.get("type")
    if kind == "exact":
        return Grader("exact", _exact)
    if kind == "numeric":
        return Grader("numeric", _numeric(float(spec.get("tolerance", 1e-6))))
    if kind == "json":
        return Grader("json", _valid_json)
    if kind == "json_schema":
        if not isinstance(spec.get("schema"), dict):
            raise GraderError("json_schema needs a `schema` object")
        return Grader("json_schema", _schema(spec["schema"]))
    if kind == "regex":
        if not isinstance(spec.get("pattern"), str):
            raise GraderError("regex needs a `pattern` string")
        return Grader("regex", _regex(spec["pattern"]))
    if kind == "python" and isinstance(spec.get("function"), str):
        return Grader(spec["function"], _user(spec["function"]))
    raise GraderError(f"unknown grader {spec!r}: use exact, numeric, json, json_schema, regex or module:function")
