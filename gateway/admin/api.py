"""The admin API under `/admin`, used by the CLI and the web console alike.

Bearer tokens from `auth.admin_tokens`, each `read` or `admin`, compared in constant time; every
mutating call needs `admin`; destructive ones (abort, rollback, retire) need a reason. Every change is
recorded in the event log with who, when, why and the before/after state. Calls are rate-limited per
token; CORS is closed (no cross-origin headers are ever sent). `GET /admin/openapi.json` describes it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import Identity
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from router.rollout import Refused
from router.state import AliasState

_M = TypeVar("_M", bound=BaseModel)
Handler = Callable[[Request, Identity], Awaitable[Any]]


class Reason(BaseModel):
    reason: str | None = Field(None, max_length=500)


class RequiredReason(BaseModel):
    reason: str = Field(min_length=3, max_length=500, description="why: recorded in the audit log")


def error_response(e: GatewayError) -> Response:
    return Response(e.body(), status_code=e.status, media_type="application/json")


def parse(model: type[_M], raw: bytes) -> _M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        first = e.errors()[0]
        raise GatewayError(400, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}",
                           "invalid_request_error", str(first["loc"][0]) if first["loc"] else None,
                           "invalid_body") from None


class RateLimiter:
    """A token bucket per identity: `rate` per second, bursts of `burst`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed


def identify(ctx: GatewayContext, request: Request, need_admin: bool) -> Identity:
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


def endpoint(ctx: GatewayContext, limiter: RateLimiter, handler: Handler, need_admin: bool
             ) -> Callable[[Request], Awaitable[Response]]:
    """Auth, rate limit, and errors in OpenAI's format around a handler returning JSON-able data."""

    async def run(request: Request) -> Response:
        try:
            origin = request.headers.get("origin")
            if need_admin and origin and origin.split("://", 1)[-1] != request.headers.get("host"):
                raise GatewayError(403, "Cross-origin admin requests are refused.", "permission_error", None,
                                   "cross_origin")
            ident = identify(ctx, request, need_admin)
            if not limiter.allow(ident.name):
                raise GatewayError(429, "Too many admin requests; slow down.", "rate_limit_error", None,
                                   "rate_limited")
            result = await handler(request, ident)
        except Refused as e:
            return error_response(GatewayError(e.status, str(e), "invalid_request_error", None, e.code))
        except GatewayError as e:
            return error_response(e)
        return Response(orjson.dumps(result, default=_default), media_type="application/json")

    return run


def _default(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump()
    raise TypeError


def alias_view(a: AliasState) -> dict[str, Any]:
    return {**a.model_dump(), "weight_pct": a.effective_weight_bp() / 100}


def routes(ctx: GatewayContext) -> list[Route]:
    from gateway.admin import openapi, rollouts, versions

    # reads are cheap (in-memory state) and dashboards poll them; changes get a tighter budget
    readers, writers = RateLimiter(rate=100.0, burst=200.0), RateLimiter(rate=10.0, burst=20.0)
    table = [*rollouts.handlers(ctx), *versions.handlers(ctx)]

    async def whoami(request: Request, ident: Identity) -> Any:
        return {"name": ident.name, "role": ident.role}

    async def events(request: Request, ident: Identity) -> Any:
        count = min(int(request.query_params.get("count", "100")), 1000)
        after = request.query_params.get("after")
        if after:  # follow: the events newer than the last one seen, oldest first
            return {"events": await ctx.store.events_after(after, count)}
        return {"events": await ctx.store.events(count)}

    table += [("GET", "/admin/whoami", whoami, False, "Who the token belongs to and its role", None),
              ("GET", "/admin/events", events, False, "The audit/event log (newest first; ?after=ID to follow)",
               None)]
    out = [Route(path, endpoint(ctx, writers if method != "GET" else readers, h, admin), methods=[method])
           for method, path, h, admin, _, _ in table]
    spec = orjson.dumps(openapi.document(table))

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    out.append(Route("/admin/openapi.json", openapi_json, methods=["GET"]))
    return out

