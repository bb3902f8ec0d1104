"""Liveness and readiness.

`/healthz`: the process answers. `/readyz`: 200 when this replica has its routing state loaded; that is
all a replica needs to serve, so one alias's broken backend never takes every replica out of the load
balancer. `/readyz?alias=A`: 200 when alias A is servable (state loaded and its stable backend answers
and serves its model), 503 otherwise (also for an unknown alias). A Redis outage alone does not fail
readiness either: the gateway serves the last known state (`cliffguard_redis_up` reports it).

Backends are not probed per call: `BackendProbes` keeps the last result for every version an alias uses
and refreshes it in the background when a caller finds it older than `max_age_s`, so a probe storm
cannot reach the backends. The body says only the status, except to a caller with an admin or read
token, who also gets the details (Redis, per alias and per version, with probe errors that name
internal hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.proxy.upstream import Backends
from router.live_state import LiveState
from router.state import AliasState, RoutingSnapshot

log = logging.getLogger("cliffguard.health")


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    detail: str
    checked_at: float  # unix time


class BackendProbes:
    """The last probe of every version an alias uses (stable or candidate), refreshed in the background."""

    def __init__(self, state: LiveState, backends: Backends, max_age_s: float = 5.0, timeout_s: float = 2.0
                 ) -> None:
        self.state = state
        self.backends = backends
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._results: dict[str, Probe] = {}
        self._refreshed = float("-inf")  # monotonic time of the last completed round
        self._round: asyncio.Task[None] | None = None

    def start(self) -> None:
        """A first round now, so the first readiness check usually finds results."""
        self._refresh()

    async def stop(self) -> None:
        if self._round is not None:
            self._round.cancel()
            await asyncio.gather(self._round, return_exceptions=True)

    async def results(self) -> dict[str, Probe]:
        """The cached results. A stale or incomplete cache starts a round in the background; only a caller
        that finds nothing at all for a version it needs waits for that round (at most the probe timeout)."""
        used = _used_versions(self.state.snapshot)
        missing = not used <= self._results.keys()
        if missing or time.monotonic() - self._refreshed > self.max_age_s:
            task = self._refresh()
            if missing:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), self.timeout_s + 1.0)
        return self._results

    def _refresh(self) -> asyncio.Task[None]:
        if self._round is None or self._round.done():  # one round at a time
            self._round = asyncio.create_task(self._probe_all(), name="cliffguard-readiness-probes")
        return self._round

    async def _probe_all(self) -> None:
        snap = self.state.snapshot
        names = sorted(_used_versions(snap))
        try:
            got = await asyncio.gather(*(self.backends.probe(snap.versions[n], self.timeout_s) for n in names))
        except Exception:  # never let a probe bug turn readiness into an error
            log.exception("readiness probes failed")
            return
        now = time.time()
        self._results = {n: Probe(ok, detail, now) for n, (ok, detail) in zip(names, got, strict=True)}
        self._refreshed = time.monotonic()


def _used_versions(snap: RoutingSnapshot) -> set[str]:
    """The registered versions some alias uses (stable or candidate)."""
    return {n for a in snap.aliases.values() for n in (a.stable, a.candidate) if n and n in snap.versions}


async def readiness(state: LiveState, probes: BackendProbes, alias: str | None, detailed: bool
                    ) -> tuple[int, dict[str, Any]]:
    """(status code, body) for `/readyz`, or for `/readyz?alias=A` when `alias` is given."""
    snap = state.snapshot
    results = await probes.results()
    views = {a.name: _alias_view(a, results) for a in snap.aliases.values() if alias in (None, a.name)}
    if alias is None:
        ready = state.loaded
        degraded = not state.redis_ok or not all(v["ready"] for v in views.values())
        body: dict[str, Any] = {"status": ("degraded" if degraded else "ready") if ready else "not_ready"}
    else:
        ready = state.loaded and alias in views and views[alias]["ready"]
        body = {"alias": alias, "status": "ready" if ready else "not_ready"}
    if detailed:
        body["state_loaded"] = state.loaded
        body["state_revision"] = snap.revision
        body["redis"] = {"ok": state.redis_ok,
                         "detail": "ok" if state.redis_ok else
                         f"unreachable; serving the last known state (revision {snap.revision})"}
        body["aliases"] = views
        if alias is not None and alias not in views:
            body["detail"] = f"unknown alias {alias!r}"
    return (200 if ready else 503), body


def _alias_view(a: AliasState, results: dict[str, Probe]) -> dict[str, Any]:
    def version(name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        p = results.get(name)
        if p is None:  # a version that is not registered is never probed
            return {"version": name, "ok": False, "detail": "not registered or not probed yet", "checked_at": None}
        return {"version": name, "ok": p.ok, "detail": p.detail, "checked_at": round(p.checked_at, 3)}

    stable = version(a.stable)
    assert stable is not None
    return {"ready": stable["ok"], "stable": stable, "candidate": version(a.candidate)}
