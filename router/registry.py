"""Version retention: a version no alias uses is retired (if an operator has not already) and kept
`retention_days`, then pruned; one in use again is un-retired. Pure: the leader applies the result."""

from __future__ import annotations

from router.state import RoutingSnapshot, VersionRecord

DAY = 86400.0


def in_use(snapshot: RoutingSnapshot) -> set[str]:
    return {n for a in snapshot.aliases.values() for n in (a.stable, a.candidate) if n}


def reconcile(snapshot: RoutingSnapshot, now: float, retention_days: float
              ) -> tuple[list[VersionRecord], list[str]]:
    """(records to update, names to prune)."""
    used = in_use(snapshot)
    update, prune = [], []
    for v in snapshot.versions.values():
        if v.name in used:
            if v.retired_at is not None:
                update.append(v.model_copy(update={"retired_at": None, "retired_reason": None}))
        elif v.retired_at is None:
            update.append(v.model_copy(update={"retired_at": now, "retired_reason": "not in use"}))
        elif now - v.retired_at > retention_days * DAY:
            prune.append(v.name)
    return update, prune
