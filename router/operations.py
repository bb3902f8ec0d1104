"""Operator actions on an alias's rollout, as pure transitions. Each either returns the new state or
refuses with an OperationRefused that says why (the API answers it as a 409 or 400). Applied under
WATCH by the store, so two operators clicking at once produce one change and a clear refusal."""

from __future__ import annotations

import time
from collections.abc import Sequence

from router.state import BP_MAX, AliasState, RoutingSnapshot

ACTIVE = ("shadow", "canary", "inconclusive", "paused")


class OperationRefused(Exception):
    def __init__(self, message: str, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _bp(pct: float) -> int:
    return round(pct * BP_MAX / 100)


def _require_rollout(a: AliasState, what: str) -> None:
    if not a.candidate or a.phase not in ACTIVE:
        raise OperationRefused(f"Cannot {what} `{a.name}`: no rollout in progress (phase {a.phase}, "
                               f"candidate {a.candidate or 'none'}).")


def promote(a: AliasState, stage_weights: Sequence[float], full: bool, now: float | None = None) -> AliasState:
    """To the next stage, or (`full`, or already at the last stage) make the candidate stable."""
    _require_rollout(a, "promote")
    now = time.time() if now is None else now
    nxt = a.stage + 1
    if full or nxt >= len(stage_weights):
        return a.model_copy(update={"phase": "promoted", "previous_stable": a.stable, "stable": a.candidate,
                                    "candidate": None, "weight_bp": 0, "pinned_categories": [], "updated_at": now})
    return a.model_copy(update={"phase": "canary", "stage": nxt, "stage_started_at": now,
                                "weight_bp": _bp(stage_weights[nxt]), "updated_at": now})


def pause(a: AliasState, now: float | None = None) -> AliasState:
    _require_rollout(a, "pause")
    if a.phase == "paused":
        raise OperationRefused(f"`{a.name}` is already paused.")
    return a.model_copy(update={"phase": "paused", "paused_from": a.phase,
                                "updated_at": time.time() if now is None else now})


def resume(a: AliasState, now: float | None = None) -> AliasState:
    if a.phase != "paused":
        raise OperationRefused(f"`{a.name}` is not paused (phase {a.phase}).")
    return a.model_copy(update={"phase": a.paused_from or "canary", "paused_from": None,
                                "updated_at": time.time() if now is None else now})


def abort(a: AliasState, now: float | None = None) -> AliasState:
    """Stop the rollout: the candidate leaves traffic; nothing is concluded about it."""
    _require_rollout(a, "abort")
    return a.model_copy(update={"phase": "aborted", "candidate": None, "weight_bp": 0, "pinned_categories": [],
                                "updated_at": time.time() if now is None else now})


def rollback(a: AliasState, snapshot: RoutingSnapshot, to: str | None = None, now: float | None = None) -> AliasState:
    """During a rollout: send everyone back to stable. Otherwise (or with `to`): make the previous stable
    (or `to`, any version still retained) the stable version again."""
    now = time.time() if now is None else now
    if to is None and a.candidate and a.phase in ACTIVE:
        return a.model_copy(update={"phase": "rolled_back", "candidate": None, "weight_bp": 0,
                                    "pinned_categories": [], "updated_at": now})
    target = to or a.previous_stable
    if target is None:
        raise OperationRefused(f"Nothing to roll back on `{a.name}`: no rollout in progress and no previous "
                               "stable version recorded; name one with --to.")
    if target not in snapshot.versions:
        raise OperationRefused(f"Version {target!r} is not registered (or was pruned after its retention).",
                               404, "unknown_version")
    if target == a.stable and not a.candidate:
        raise OperationRefused(f"`{a.name}` already serves {target!r} as stable.")
    return a.model_copy(update={"phase": "rolled_back", "previous_stable": a.stable, "stable": target,
                                "candidate": None, "weight_bp": 0, "pinned_categories": [], "updated_at": now})


def pin(a: AliasState, category: str, categories: Sequence[str], now: float | None = None) -> AliasState:
    if category not in categories:
        raise OperationRefused(f"Unknown category {category!r}; known: {', '.join(categories)}.", 400,
                               "unknown_category")
    if category in a.pinned_categories:
        raise OperationRefused(f"{category!r} is already pinned to stable on `{a.name}`.")
    return a.model_copy(update={"pinned_categories": sorted({*a.pinned_categories, category}),
                                "updated_at": time.time() if now is None else now})


def unpin(a: AliasState, category: str, now: float | None = None) -> AliasState:
    if category not in a.pinned_categories:
        raise OperationRefused(f"{category!r} is not pinned on `{a.name}`.")
    return a.model_copy(update={"pinned_categories": [c for c in a.pinned_categories if c != category],
                                "updated_at": time.time() if now is None else now})
