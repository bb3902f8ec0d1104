"""The admin API under `/admin`: state and rollout changes, for the CLI (and, later, the console).

Bearer tokens from `auth.admin_tokens`, each `read` or `admin`; every mutating call needs `admin`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.auth import Identity
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from monitoring.controller import start_rollout
from router.state import BP_MAX, AliasState

_M = TypeVar("_M", bound=BaseModel)


class RolloutStart(BaseModel):
    candidate: str
    reason: str | None = None


class SplitChange(BaseModel):
    candidate: str | None = Field(None, description="version to send traffic to; null removes it")
    weight_pct: float = Field(ge=0, le=100)
    reason: str | None = None


def _error(e: GatewayError) -> Response:
    return Response(e.body(), status_code=e.status, media_type="application/json")


def _parse(model: type[_M], raw: bytes) -> _M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise GatewayError(400, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}",
                           "invalid_request_error", None, "invalid_body") from None


def _identify(ctx: GatewayContext, request: Request, need_admin: bool) -> Identity:
    if not ctx.auth.admin_enabled:
        raise GatewayError(403, "The admin API is disabled: no admin tokens are configured.",
                           "permission_error", None, "admin_disabled")
    ident = ctx.auth.identify(request.headers.get("authorization"))
    if ident is None or ident.role == "client":
        raise GatewayError(401, "Missing or invalid admin token.", "invalid_request_error", None,
                           "invalid_api_key")
    if need_admin and not ident.is_admin:
        raise GatewayError(403, f"Token {ident.name!r} is read-only; this action needs an admin token.",
                           "permission_error", None, "forbidden")
    return ident


async def _change_candidate(ctx: GatewayContext, name: str, candidate: str | None,
                            change: Callable[[AliasState], AliasState], event: dict[str, Any]) -> AliasState:
    """Apply a candidate change to an alias (checked, atomic, recorded) and make this replica see it now;
    the others see it within state_refresh_s."""
    if candidate is not None and candidate not in ctx.state.snapshot.versions:
        raise GatewayError(404, f"Unknown version {candidate!r}.", "invalid_request_error", "candidate",
                           "unknown_version")

    def mutate(a: AliasState) -> AliasState:
        if candidate == a.stable:
            raise GatewayError(400, "The candidate must differ from the stable version.", "invalid_request_error",
                               "candidate", "invalid_value")
        return change(a)

    try:
        _, after = await ctx.store.update_alias(name, mutate, event)
    except KeyError:
        raise GatewayError(404, f"Unknown alias {name!r}.", "invalid_request_error", "alias",
                           "unknown_alias") from None
    await ctx.state.refresh()
    return after


def alias_view(a: AliasState) -> dict[str, Any]:
    return {**a.model_dump(), "weight_pct": a.effective_weight_bp() / 100}


def routes(ctx: GatewayContext) -> list[Route]:
    async def get_state(request: Request) -> Response:
        try:
            _identify(ctx, request, need_admin=False)
        except GatewayError as e:
            return _error(e)
        snap = ctx.state.snapshot
        return JSONResponse({
            "revision": snap.revision,
            "redis_ok": ctx.state.redis_ok,
            "aliases": [alias_view(a) for a in sorted(snap.aliases.values(), key=lambda a: a.name)],
            "versions": [v.model_dump() for v in sorted(snap.versions.values(), key=lambda v: v.name)],
        })

    async def set_split(request: Request) -> Response:
        try:
            ident = _identify(ctx, request, need_admin=True)
            change = _parse(SplitChange, await request.body())
            after = await _change_candidate(
                ctx, request.path_params["alias"], change.candidate,
                lambda a: a.with_split(change.candidate, round(change.weight_pct * BP_MAX / 100)),
                {"type": "split_set", "actor": ident.name, "reason": change.reason})
        except GatewayError as e:
            return _error(e)
        return JSONResponse(alias_view(after))

    async def start(request: Request) -> Response:
        try:
            ident = _identify(ctx, request, need_admin=True)
            body = _parse(RolloutStart, await request.body())
            name = request.path_params["alias"]
            policy = ctx.settings.controller.policies.get(name, ctx.settings.controller.policy)
            after = await _change_candidate(
                ctx, name, body.candidate, lambda a: start_rollout(a, body.candidate, policy, time.time()),
                {"type": "rollout_started", "actor": ident.name, "reason": body.reason})
        except GatewayError as e:
            return _error(e)
        return JSONResponse(alias_view(after))

    async def get_events(request: Request) -> Response:
        try:
            _identify(ctx, request, need_admin=False)
        except GatewayError as e:
            return _error(e)
        count = min(int(request.query_params.get("count", "100")), 1000)
        return JSONResponse({"events": await ctx.store.events(count)})

    return [
        Route("/admin/state", get_state, methods=["GET"]),
        Route("/admin/aliases/{alias}/split", set_split, methods=["PUT"]),
        Route("/admin/aliases/{alias}/rollout", start, methods=["POST"]),
        Route("/admin/events", get_events, methods=["GET"]),
    ]
