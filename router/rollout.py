"""The rollout state machine: every change of an alias's rollout, by the controller or by an operator, is
one of these transitions. Pure: each takes the alias and a context and returns the event kind and the new
state, or refuses with a reason. The store applies them under WATCH (monitoring/rollouts.py), so counters,
clocks and history cannot diverge between the controller and the operators.

    manual --start--> shadow|canary --advance--> canary ... --advance(last)--> promoted
    shadow|canary|inconclusive --inconclusive--> inconclusive (the weight holds; evaluation goes on)
    any active --pause--> paused --resume--> the phase it left (its stage clock shifted by the pause)
    any active --rollback--> rolled_back      any active --abort--> aborted
    promoted --rollback--> rolled_back (the previous stable again)   anything --rollback(to=V)--> rolled_back
    anything --set_split--> manual

Every transition bumps the alias's `revision`; an operator's action carries the revision it was decided on,
and a stale or repeated one is refused (409) with what is live now.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.state import BP_MAX, AliasState, Phase, VersionRecord


class Refused(Exception):
    """A transition that does not apply; the admin API answers it with `status`."""

    def __init__(self, message: str, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Context:
    """What a transition may need besides the alias."""

    now: float
    stage_weights: Sequence[float] = ()  # the policy's stages, in percent
    pairs_total: int = 0  # judged pairs of the rollout so far: a new stage's minimum counts from here
    versions: Mapping[str, VersionRecord] = field(default_factory=dict)
    categories: Sequence[str] = ()
    preflight_required: bool = False  # the alias's policy: a candidate needs a passed preflight to get traffic


Result = tuple[str, AliasState]


def _bp(pct: float) -> int:
    return round(pct * BP_MAX / 100)


def _next(a: AliasState, ctx: Context, **update: Any) -> AliasState:
    return a.model_copy(update={**update, "revision": a.revision + 1, "updated_at": ctx.now})


def check_revision(a: AliasState, expected: int | None) -> None:
    """Refuse an action decided on a state that is no longer live (a second click, a stale page)."""
    if expected is not None and expected != a.revision:
        raise Refused(f"`{a.name}` changed since you looked (revision {expected}); now: {a.describe()}. "
                      "Nothing was done: look again and decide on what is live.", 409, "stale_state")


def _require_active(a: AliasState, what: str) -> None:
    if not a.candidate or not a.phase.active:
        raise Refused(f"Cannot {what} `{a.name}`: no rollout in progress ({a.describe()}).")


def _fresh_rollout_id(candidate: str, now: float) -> str:
    return f"{candidate}@{now:.0f}-{os.urandom(3).hex()}"


def preflight_gate(a: AliasState, candidate: str, ctx: Context, force: bool) -> None:
    """The preflight gate (when the policy requires it): the candidate's latest preflight must have passed
    against the alias's current stable. `force` (with a reason, recorded in the event) overrides it."""
    if not ctx.preflight_required or force:
        return
    stamp = ctx.versions[candidate].preflight
    if stamp is None:
        why = "has no preflight"
    elif stamp.baseline != a.stable:
        why = f"was preflighted against {stamp.baseline!r}, not the stable {a.stable!r}"
    elif not stamp.passed:
        why = f"failed its preflight (suite {stamp.suite_id}, run {stamp.run_id}) on: {', '.join(stamp.failed)}"
    else:
        return
    raise Refused(f"Candidate {candidate!r} {why}; the policy of `{a.name}` requires a passed preflight. Run "
                  "`cliffguard preflight`, or override with --force and a reason.", 409, "preflight_required")


def start(a: AliasState, candidate: str, ctx: Context, force: bool = False) -> Result:
    """A managed rollout of `candidate` from the first stage, with a fresh rollout id (fresh early users,
    fresh evidence)."""
    if candidate == a.stable:
        raise Refused("The candidate must differ from the stable version.", 400, "invalid_value")
    if candidate not in ctx.versions:
        raise Refused(f"Unknown version {candidate!r}.", 404, "unknown_version")
    preflight_gate(a, candidate, ctx, force)
    if a.candidate and a.phase.active:
        raise Refused(f"A rollout of {a.candidate!r} is in progress on `{a.name}`; abort or roll it back first.")
    first = ctx.stage_weights[0] if ctx.stage_weights else 0.0
    return "rollout_started", _next(
        a, ctx, candidate=candidate, weight_bp=_bp(first), rollout_id=_fresh_rollout_id(candidate, ctx.now),
        phase=Phase.SHADOW if first == 0 else Phase.CANARY, stage=0, rollout_started_at=ctx.now,
        stage_started_at=ctx.now, pairs_at_stage_start=0, pinned_categories=[], paused_from=None, paused_at=None)


def set_split(a: AliasState, candidate: str | None, weight_pct: float, ctx: Context, force: bool = False) -> Result:
    """An operator sets the candidate and its share by hand; the controller then only analyses. Users
    served by a new candidate need its preflight as `start` does (shadow, weight 0, does not)."""
    if candidate is not None and candidate == a.stable:
        raise Refused("The candidate must differ from the stable version.", 400, "invalid_value")
    if candidate is not None and candidate not in ctx.versions:
        raise Refused(f"Unknown version {candidate!r}.", 404, "unknown_version")
    if candidate is not None and weight_pct > 0:
        preflight_gate(a, candidate, ctx, force)
    split = a.with_split(candidate, _bp(weight_pct), ctx.now)
    started = a.rollout_started_at if split.rollout_id == a.rollout_id else ctx.now
    return "split_set", _next(split, ctx, phase=Phase.MANUAL, rollout_started_at=started, paused_from=None,
                              paused_at=None)


def advance(a: AliasState, ctx: Context, full: bool = False) -> Result:
    """To the next stage (its clock and pair counter start now), or past the last one (or `full`): the
    candidate becomes stable."""
    _require_active(a, "promote")
    nxt = a.stage + 1
    if full or nxt >= len(ctx.stage_weights):
        return complete(a, ctx)
    return "promoted", _next(a, ctx, phase=Phase.CANARY, stage=nxt, weight_bp=_bp(ctx.stage_weights[nxt]),
                             stage_started_at=ctx.now, pairs_at_stage_start=ctx.pairs_total, paused_from=None,
                             paused_at=None)


def complete(a: AliasState, ctx: Context) -> Result:
    _require_active(a, "promote")
    return "completed", _next(a, ctx, phase=Phase.PROMOTED, previous_stable=a.stable, stable=a.candidate,
                              candidate=None, weight_bp=0, pinned_categories=[], paused_from=None, paused_at=None)


def rollback(a: AliasState, ctx: Context, to: str | None = None) -> Result:
    """With a candidate: everyone back to stable. After a promotion: the previous stable again. With `to`:
    any retained version becomes stable. Once already rolled back, only an explicit `to` goes further back
    (a repeated click must not put a weeks-old version into production)."""
    if to is None and a.candidate:  # a managed rollout, or a split set by hand
        return "rolled_back", _next(a, ctx, phase=Phase.ROLLED_BACK, candidate=None, weight_bp=0,
                                    pinned_categories=[], paused_from=None, paused_at=None)
    if to is None:
        if a.phase != Phase.PROMOTED or a.previous_stable is None:
            raise Refused(f"Nothing to roll back on `{a.name}`: {a.describe()}. To make another retained "
                          "version stable, name it (--to, or the console's explicit choice).")
        to = a.previous_stable
    if to not in ctx.versions:
        raise Refused(f"Version {to!r} is not registered (or was pruned after its retention).", 404,
                      "unknown_version")
    if to == a.stable and not a.candidate:
        raise Refused(f"`{a.name}` already serves {to!r} as stable.")
    return "rolled_back", _next(a, ctx, phase=Phase.ROLLED_BACK, previous_stable=a.stable, stable=to,
                                candidate=None, weight_bp=0, pinned_categories=[], paused_from=None, paused_at=None)


def abort(a: AliasState, ctx: Context) -> Result:
    """Stop the rollout: the candidate leaves traffic; nothing is concluded about it."""
    _require_active(a, "abort")
    return "aborted", _next(a, ctx, phase=Phase.ABORTED, candidate=None, weight_bp=0, pinned_categories=[],
                            paused_from=None, paused_at=None)


def pause(a: AliasState, ctx: Context) -> Result:
    _require_active(a, "pause")
    if a.phase == Phase.PAUSED:
        raise Refused(f"`{a.name}` is already paused.")
    return "paused", _next(a, ctx, phase=Phase.PAUSED, paused_from=a.phase, paused_at=ctx.now)


def resume(a: AliasState, ctx: Context) -> Result:
    """Back to the phase it left; the stage clock moves by the pause, so bake time and the stage deadline
    count only time spent running."""
    if a.phase != Phase.PAUSED:
        raise Refused(f"`{a.name}` is not paused ({a.describe()}).")
    paused_for = ctx.now - (a.paused_at if a.paused_at is not None else ctx.now)
    return "resumed", _next(a, ctx, phase=a.paused_from or Phase.CANARY, paused_from=None, paused_at=None,
                            stage_started_at=a.stage_started_at + paused_for)


def mark_inconclusive(a: AliasState, ctx: Context) -> Result:
    _require_active(a, "mark inconclusive")
    return "inconclusive", _next(a, ctx, phase=Phase.INCONCLUSIVE)


def pin(a: AliasState, category: str, ctx: Context) -> Result:
    if category not in ctx.categories:
        raise Refused(f"Unknown category {category!r}; known: {', '.join(ctx.categories)}.", 400, "unknown_category")
    if category in a.pinned_categories:
        raise Refused(f"{category!r} is already pinned to stable on `{a.name}`.")
    return "category_pinned", _next(a, ctx, pinned_categories=sorted({*a.pinned_categories, category}))


def unpin(a: AliasState, category: str, ctx: Context) -> Result:
    if category not in a.pinned_categories:
        raise Refused(f"{category!r} is not pinned on `{a.name}`.")
    return "category_unpinned", _next(a, ctx, pinned_categories=[c for c in a.pinned_categories if c != category])
