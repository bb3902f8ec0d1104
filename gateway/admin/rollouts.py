"""Admin API: the state of every alias and the operations on its rollout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request

from gateway.admin.api import Reason, RequiredReason, alias_view, parse
from gateway.auth import Identity
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from judges.queue import JudgeQueue
from monitoring.controller import analyse_rollout, start_rollout
from router import operations as ops
from router.state import BP_MAX, AliasState


class Start(Reason):
    candidate: str


class Split(Reason):
    candidate: str | None = Field(None, description="version to send traffic to; null removes it")
    weight_pct: float = Field(ge=0, le=100)


class Promote(Reason):
    full: bool = Field(False, description="skip the remaining stages: the candidate becomes stable now")


class Rollback(RequiredReason):
    to: str | None = Field(None, description="any retained version; default: back to stable / previous stable")


class Pin(Reason):
    category: str


def handlers(ctx: GatewayContext) -> list[tuple[str, str, Any, bool, str, type[BaseModel] | None]]:
    def policy(alias: str) -> Any:
        return ctx.settings.controller.policies.get(alias, ctx.settings.controller.policy)

    async def change(request: Request, ident: Identity, kind: str, reason: str | None,
                     mutate: Callable[[AliasState], AliasState]) -> Any:
        name = request.path_params["alias"]
        try:
            before, after = await ctx.store.update_alias(
                name, mutate, {"type": kind, "actor": ident.name, "reason": reason})
        except KeyError:
            raise GatewayError(404, f"Unknown alias {name!r}.", "invalid_request_error", "alias",
                               "unknown_alias") from None
        await ctx.state.refresh()  # this replica now; the others within state_refresh_s
        return {"before": alias_view(before), "after": alias_view(after)}

    def known_version(name: str | None) -> None:
        if name is not None and name not in ctx.state.snapshot.versions:
            raise GatewayError(404, f"Unknown version {name!r}.", "invalid_request_error", "candidate",
                               "unknown_version")

    def not_stable(a: AliasState, candidate: str | None) -> None:
        if candidate == a.stable:
            raise ops.OperationRefused("The candidate must differ from the stable version.", 400, "invalid_value")

    async def state(request: Request, ident: Identity) -> Any:
        snap = ctx.state.snapshot
        return {"revision": snap.revision, "redis_ok": ctx.state.redis_ok,
                "aliases": [alias_view(a) for a in sorted(snap.aliases.values(), key=lambda a: a.name)],
                "versions": [v.model_dump() for v in sorted(snap.versions.values(), key=lambda v: v.name)],
                "retention_days": ctx.settings.controller.retention_days}

    async def stats(request: Request, ident: Identity) -> Any:
        name = request.path_params["alias"]
        a = ctx.state.snapshot.aliases.get(name)
        if a is None:
            raise GatewayError(404, f"Unknown alias {name!r}.", "invalid_request_error", "alias", "unknown_alias")
        p = policy(name)
        raw = await JudgeQueue(ctx.store.redis, ctx.settings.key_prefix).stats(name, a.rollout_id)
        counts, analysed = analyse_rollout(p, raw)
        return {"alias": name, "rollout_id": a.rollout_id, "categories": {
            c: {"wins": counts[c].wins, "ties": counts[c].ties, "losses": counts[c].losses, **s.__dict__,
                "tolerance": p.category(c).tolerance, "muted": p.category(c).muted,
                "status": "regressed" if s.rejected else "within tolerance" if s.cleared else "collecting"}
            for c, s in sorted(analysed.items())}}

    async def split(request: Request, ident: Identity) -> Any:
        body = parse(Split, await request.body())
        known_version(body.candidate)

        def mutate(a: AliasState) -> AliasState:
            not_stable(a, body.candidate)
            return a.with_split(body.candidate, round(body.weight_pct * BP_MAX / 100)).model_copy(
                update={"phase": "manual"})
        return (await change(request, ident, "split_set", body.reason, mutate))["after"]

    async def start(request: Request, ident: Identity) -> Any:
        body = parse(Start, await request.body())
        known_version(body.candidate)
        p = policy(request.path_params["alias"])

        def mutate(a: AliasState) -> AliasState:
            not_stable(a, body.candidate)
            if a.candidate and a.phase in ops.ACTIVE:
                raise ops.OperationRefused(f"A rollout of {a.candidate!r} is in progress on `{a.name}`; abort or "
                                           "roll it back first.")
            return start_rollout(a, body.candidate, p, time.time())
        return (await change(request, ident, "rollout_started", body.reason, mutate))["after"]

    async def promote(request: Request, ident: Identity) -> Any:
        body = parse(Promote, await request.body())
        weights = [s.weight_pct for s in policy(request.path_params["alias"]).stages]
        return await change(request, ident, "promoted_by_operator", body.reason,
                            lambda a: ops.promote(a, weights, body.full))

    async def pause(request: Request, ident: Identity) -> Any:
        body = parse(Reason, await request.body())
        return await change(request, ident, "paused", body.reason, ops.pause)

    async def resume(request: Request, ident: Identity) -> Any:
        body = parse(Reason, await request.body())
        return await change(request, ident, "resumed", body.reason, ops.resume)

    async def abort(request: Request, ident: Identity) -> Any:
        body = parse(RequiredReason, await request.body())
        return await change(request, ident, "aborted", body.reason, ops.abort)

    async def rollback(request: Request, ident: Identity) -> Any:
        body = parse(Rollback, await request.body())
        result = await change(request, ident, "rolled_back_by_operator", body.reason,
                              lambda a: ops.rollback(a, ctx.state.snapshot, body.to))
        target = ctx.state.snapshot.versions.get(result["after"]["stable"])
        if target is not None and target.retired_at is not None:  # made stable again: no longer retired
            await ctx.store.write(versions=[target.model_copy(update={"retired_at": None, "retired_reason": None})])
            await ctx.state.refresh()
        return result

    async def pin(request: Request, ident: Identity) -> Any:
        body = parse(Pin, await request.body())
        names = list(ctx.classifier.taxonomy.names)
        return await change(request, ident, "category_pinned", body.reason, lambda a: ops.pin(a, body.category, names))

    async def unpin(request: Request, ident: Identity) -> Any:
        body = parse(Pin, await request.body())
        return await change(request, ident, "category_unpinned", body.reason, lambda a: ops.unpin(a, body.category))

    base = "/admin/aliases/{alias}"
    return [
        ("GET", "/admin/state", state, False, "Every alias (stable, candidate, phase, weight) and version", None),
        ("GET", f"{base}/stats", stats, False, "Per-category estimates, bounds and decisions of the rollout", None),
        ("PUT", f"{base}/split", split, True, "Set candidate and weight by hand (the controller leaves it alone)",
         Split),
        ("POST", f"{base}/rollout", start, True, "Start a managed rollout of a candidate", Start),
        ("POST", f"{base}/promote", promote, True, "Promote to the next stage, or fully", Promote),
        ("POST", f"{base}/pause", pause, True, "Pause the rollout: the weight holds, the controller waits", Reason),
        ("POST", f"{base}/resume", resume, True, "Resume a paused rollout", Reason),
        ("POST", f"{base}/abort", abort, True, "Abort the rollout (reason required)", RequiredReason),
        ("POST", f"{base}/rollback", rollback, True,
         "Roll back: the candidate out, or a retained version made stable (reason required)", Rollback),
        ("POST", f"{base}/pin", pin, True, "Route a category to stable", Pin),
        ("POST", f"{base}/unpin", unpin, True, "Stop routing a category to stable", Pin),
    ]
