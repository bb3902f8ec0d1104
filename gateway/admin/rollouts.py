"""Admin API: the state of every alias and the operations on its rollout.

Operations are transitions of the one state machine (router/rollout.py), applied through the same write
path as the controller's (monitoring/rollouts.py). Each may carry `expected_revision`, the alias revision
the operator decided on (the console and the CLI always send it): a stale or repeated action is refused
with 409 and what is live now.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, model_validator
from redis.exceptions import RedisError
from starlette.requests import Request

from gateway.admin.api import Reason, RequiredReason, alias_view, parse
from gateway.auth import Identity
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from judges.queue import JudgeQueue
from monitoring.policy import RolloutPolicy
from router import rollout
from router.state import AliasState


class Expect(BaseModel):
    expected_revision: int | None = Field(None, ge=0, description="the alias revision this action was decided "
                                                                  "on; refused (409) if it changed since")


class Op(Reason, Expect):
    pass


class RequiredOp(RequiredReason, Expect):
    pass


class Force(BaseModel):
    force: bool = Field(False, description="start without a passed preflight although the policy requires one "
                                           "(needs a reason; recorded in the audit log)")

    @model_validator(mode="after")
    def _reason(self) -> Force:
        reason = getattr(self, "reason", None)
        if self.force and (reason is None or len(reason.strip()) < 3):
            raise ValueError("force needs a reason (recorded in the audit log)")
        return self


class Start(Op, Force):
    candidate: str


class Split(Op, Force):
    candidate: str | None = Field(None, description="version to send traffic to; null removes it")
    weight_pct: float = Field(ge=0, le=100)


class Promote(Op):
    full: bool = Field(False, description="skip the remaining stages: the candidate becomes stable now")


class Rollback(RequiredOp):
    to: str | None = Field(None, description="a retained version to make stable; needed once the rollout is "
                                             "already rolled back")


class Pin(Op):
    category: str


def handlers(ctx: GatewayContext) -> list[tuple[str, str, Any, bool, str, type[BaseModel] | None]]:
    def policy(alias: str) -> RolloutPolicy:
        return ctx.settings.controller.policies.get(alias, ctx.settings.controller.policy)

    async def pairs_total(name: str) -> int:
        a = ctx.state.snapshot.aliases.get(name)
        if a is None or not a.rollout_id:
            return 0
        raw = await JudgeQueue(ctx.store.redis, ctx.settings.key_prefix).stats(name, a.rollout_id)
        return sum(v.get("n", 0) for v in raw.values())

    async def change(request: Request, ident: Identity, body: Op | RequiredOp,
                     transition: Callable[[AliasState, rollout.Context], rollout.Result]) -> Any:
        name = request.path_params["alias"]
        p = policy(name)
        context = rollout.Context(now=time.time(), stage_weights=[s.weight_pct for s in p.stages],
                                  pairs_total=await pairs_total(name), versions=ctx.state.snapshot.versions,
                                  categories=ctx.classifier.taxonomy.names, preflight_required=p.preflight.required)
        extra = None
        if isinstance(body, Force) and body.force:  # the override is part of the audit record
            cand = ctx.state.snapshot.versions.get(getattr(body, "candidate", None) or "")
            extra = {"forced": True, "preflight_required": p.preflight.required,
                     "preflight": cand.preflight.model_dump() if cand and cand.preflight else None}
        try:
            event, before, after = await ctx.rollouts.apply(
                name, lambda a: transition(a, context), actor=ident.name, by="operator", reason=body.reason,
                expected_revision=body.expected_revision, extra=extra)
        except KeyError:
            raise GatewayError(404, f"Unknown alias {name!r}.", "invalid_request_error", "alias",
                               "unknown_alias") from None
        await ctx.state.refresh()  # this replica now; the others within state_refresh_s
        return {"transition": event["type"], "before": alias_view(before), "after": alias_view(after)}

    async def state(request: Request, ident: Identity) -> Any:
        # what Redis holds now, not what this replica last polled: an operator (or a script) that reads the
        # state right after the controller or another replica changed it must see the change
        with contextlib.suppress(RedisError, OSError):  # unreachable: the last snapshot, with redis_ok false
            await ctx.state.refresh()
        snap = ctx.state.snapshot
        return {"revision": snap.revision, "redis_ok": ctx.state.redis_ok,
                "aliases": [alias_view(a) for a in sorted(snap.aliases.values(), key=lambda a: a.name)],
                "versions": [v.model_dump() for v in sorted(snap.versions.values(), key=lambda v: v.name)],
                "retention_days": ctx.settings.controller.retention_days}

    async def stats(request: Request, ident: Identity) -> Any:
        """The controller's own analysis of the live rollout, as stored (never computed here)."""
        name = request.path_params["alias"]
        a = ctx.state.snapshot.aliases.get(name)
        if a is None:
            raise GatewayError(404, f"Unknown alias {name!r}.", "invalid_request_error", "alias", "unknown_alias")
        analysis = ctx.analyses.current(ctx.state, name)
        if analysis is None:
            return {"alias": name, "rollout_id": a.rollout_id, "analysed": False, "categories": {}, "guards": {},
                    "note": "no analysis of this rollout yet (a controller analyses every few seconds)"
                    if a.candidate else "no candidate"}
        return {**analysis.model_dump(), "analysed": True}

    async def split(request: Request, ident: Identity) -> Any:
        body = parse(Split, await request.body())
        r = await change(request, ident, body,
                         lambda a, c: rollout.set_split(a, body.candidate, body.weight_pct, c, body.force))
        return r["after"]

    async def start(request: Request, ident: Identity) -> Any:
        body = parse(Start, await request.body())
        return (await change(request, ident, body,
                             lambda a, c: rollout.start(a, body.candidate, c, body.force)))["after"]

    async def promote(request: Request, ident: Identity) -> Any:
        body = parse(Promote, await request.body())
        return await change(request, ident, body, lambda a, c: rollout.advance(a, c, full=body.full))

    async def pause(request: Request, ident: Identity) -> Any:
        return await change(request, ident, parse(Op, await request.body()), rollout.pause)

    async def resume(request: Request, ident: Identity) -> Any:
        return await change(request, ident, parse(Op, await request.body()), rollout.resume)

    async def abort(request: Request, ident: Identity) -> Any:
        return await change(request, ident, parse(RequiredOp, await request.body()), rollout.abort)

    async def rollback(request: Request, ident: Identity) -> Any:
        body = parse(Rollback, await request.body())
        return await change(request, ident, body, lambda a, c: rollout.rollback(a, c, body.to))

    async def pin(request: Request, ident: Identity) -> Any:
        body = parse(Pin, await request.body())
        return await change(request, ident, body, lambda a, c: rollout.pin(a, body.category, c))

    async def unpin(request: Request, ident: Identity) -> Any:
        body = parse(Pin, await request.body())
        return await change(request, ident, body, lambda a, c: rollout.unpin(a, body.category, c))

    base = "/admin/aliases/{alias}"
    return [
        ("GET", "/admin/state", state, False,
         "Every alias (stable, candidate, phase, weight, revision) and version, as Redis holds them now", None),
        ("GET", f"{base}/stats", stats, False, "The controller's analysis of the rollout: per-category estimates, "
         "bounds, gates, time to decision, guards and exposure", None),
        ("PUT", f"{base}/split", split, True, "Set candidate and weight by hand (the controller only analyses it)",
         Split),
        ("POST", f"{base}/rollout", start, True, "Start a managed rollout of a candidate", Start),
        ("POST", f"{base}/promote", promote, True, "Promote to the next stage, or fully", Promote),
        ("POST", f"{base}/pause", pause, True, "Pause the rollout: the weight holds, the controller waits", Op),
        ("POST", f"{base}/resume", resume, True, "Resume a paused rollout", Op),
        ("POST", f"{base}/abort", abort, True, "Abort the rollout (reason required)", RequiredOp),
        ("POST", f"{base}/rollback", rollback, True,
         "Roll back: the candidate out, or a retained version made stable (reason required)", Rollback),
        ("POST", f"{base}/pin", pin, True, "Route a category to stable", Pin),
        ("POST", f"{base}/unpin", unpin, True, "Stop routing a category to stable", Pin),
    ]
