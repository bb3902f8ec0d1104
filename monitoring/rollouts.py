"""Applying rollout transitions (router/rollout.py): the one write path for the controller and the
operators alike. Every transition is written under WATCH with the alias's revision checked (a stale or
repeated action is refused with what is live now), fenced when the controller writes, and records an event
(with the candidate's exposure per category), a metric and a webhook (Flagger-style: event, metric, alert).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from monitoring import guards
from monitoring import metrics as m
from monitoring.notify import Notifier
from router.rollout import Result, check_revision
from router.state import AliasState
from router.store import Fence, StateStore

By = Literal["operator", "controller"]


class Rollouts:
    def __init__(self, store: StateStore, notifier: Notifier | None = None) -> None:
        self.store = store
        self.notifier = notifier

    async def exposure(self, alias: str) -> dict[str, int]:
        """Requests the alias's current candidate has served to users in this rollout, per category."""
        raw = await self.store.redis.hget(self.store.k_aliases, alias)
        if raw is None:
            return {}
        a = AliasState.model_validate_json(raw)
        if not a.candidate:
            return {}
        counts = guards.parse(await self.store.redis.hgetall(guards.key(self.store.prefix, alias, a.rollout_id)))
        return dict(counts[a.candidate].served) if a.candidate in counts else {}

    async def apply(self, alias: str, transition: Callable[[AliasState], Result], *, actor: str, by: By,
                    reason: str | None = None, expected_revision: int | None = None,
                    extra: dict[str, Any] | None = None, fence: Fence | None = None,
                    ) -> tuple[dict[str, Any], AliasState, AliasState]:
        """Apply `transition` to the alias as it is now. Raises router.rollout.Refused (nothing written),
        KeyError for an unknown alias, router.store.Fenced when a fenced writer lost its token."""

        def checked(a: AliasState) -> Result:
            check_revision(a, expected_revision)
            return transition(a)

        event = {"actor": actor, "by": by, "reason": reason, **(extra or {}),
                 "exposure": await self.exposure(alias)}
        full, before, after = await self.store.update_alias(alias, checked, event, fence)
        m.ROLLOUT_TRANSITIONS.labels(alias, full["type"], by).inc()
        if self.notifier is not None:
            self.notifier.send(full)
        return full, before, after
