"""The admin API under `/admin`, used by the CLI and the web console alike.

Bearer tokens from `auth.admin_tokens`, each `read` or `admin`, compared in constant time; every
mutating call needs `admin`; destructive ones (abort, rollback, retire) need a reason. Every change is
recorded in the event log with who, when, why and the before/after state. Calls are rate-limited per
token; CORS is closed (no cross-origin headers are ever sent). `GET /admin/openapi.json` describes it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, Field, ValidationError, field_validator
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import Identity
from gateway.console.routes import SECURITY_HEADERS
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from monitoring.report import html as report_html
from monitoring.report import markdown as report_md
from router.rollout import Refused
from router.state import AliasState

_M = TypeVar("_M", bound=BaseModel)
# Redis unreachable or not answering (an error Redis itself answers is a bug: a 500, not a 503)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
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
        raise _invalid(e, "body", "invalid_body") from None


def parse_query(model: type[_M], request: Request) -> _M:
    """Query parameters checked against a model (the same model declares them in the OpenAPI document)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as e:
        raise _invalid(e, "query", "invalid_query") from None


def _invalid(e: ValidationError, where: str, code: str) -> GatewayError:
    first = e.errors()[0]
    return GatewayError(400, f"{'.'.join(map(str, first['loc'])) or where}: {first['msg']}",
                        "invalid_request_error", str(first["loc"][0]) if first["loc"] else None, code)


_ID_PART_MAX = 2**64 - 1  # a Redis stream id is two unsigned 64-bit integers


class EventsQuery(BaseModel):
    count: int = Field(100, ge=1, le=1000, description="how many events")
    after: str | None = Field(None, pattern=r"^[0-9]{1,20}(-[0-9]{1,20})?$",
                              description="an event id: only newer events, oldest first (to follow the log)")

    @field_validator("after")
    @classmethod
    def _stream_id(cls, v: str | None) -> str | None:
        if v is not None and any(int(part) > _ID_PART_MAX for part in v.split("-")):
            raise ValueError("not an event id (each part must fit in 64 bits)")
        return v


class ReportQuery(BaseModel):
    format: Literal["html", "md", "json"] = Field("html", description="html (charts), md, or the data as json")


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
            if isinstance(result, Response):  # a report: HTML or Markdown
                return result
        except Refused as e:
            return error_response(GatewayError(e.status, str(e), "invalid_request_error", None, e.code))
        except GatewayError as e:
            return error_response(e)
        except REDIS_DOWN as e:
            return error_response(redis_unavailable(e, changes=need_admin))
        return Response(orjson.dumps(result, default=_default), media_type="application/json")

    return run


def redis_unavailable(e: BaseException, changes: bool) -> GatewayError:
    """503 for an admin call that needed Redis while it is unreachable, saying what did not happen."""
    if not changes:
        outcome = "it holds what this call reads; try again when it is back"
    elif isinstance(e, RedisTimeoutError | TimeoutError):  # the command may have reached Redis, the answer not
        outcome = "the change may not have been applied: check the event log before retrying"
    else:
        outcome = "the change was not applied"
    return GatewayError(503, f"Redis is unreachable ({type(e).__name__}); {outcome}.", "server_error", None,
                        "redis_unavailable")


def _default(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump()
    raise TypeError


def alias_view(a: AliasState) -> dict[str, Any]:
    return {**a.model_dump(), "weight_pct": a.effective_weight_bp() / 100}


def routes(ctx: GatewayContext) -> list[Route]:
    from gateway.admin import openapi, reports, rollouts, versions

    # reads are cheap (in-memory state) and dashboards poll them; changes get a tighter budget
    readers, writers = RateLimiter(rate=100.0, burst=200.0), RateLimiter(rate=10.0, burst=20.0)
    table = [*rollouts.handlers(ctx), *versions.handlers(ctx)]

    async def whoami(request: Request, ident: Identity) -> Any:
        return {"name": ident.name, "role": ident.role}

    async def events(request: Request, ident: Identity) -> Any:
        q = parse_query(EventsQuery, request)
        if q.after is not None:  # follow: the events newer than the last one seen, oldest first
            if [int(p) for p in q.after.split("-")] == [_ID_PART_MAX, _ID_PART_MAX]:
                return {"events": []}  # nothing can follow the largest id (Redis refuses the range)
            return {"events": await ctx.store.events_after(q.after, q.count)}
        return {"events": await ctx.store.events(q.count)}

    async def report(request: Request, ident: Identity) -> Any:
        q = parse_query(ReportQuery, request)
        kind, ref = request.path_params["kind"], request.path_params["ref"]
        try:
            if kind == "preflight":
                r = await reports.preflight_report(ctx.store, ref)
            elif kind == "rollout":
                r = await reports.rollout_report(
                    ctx.store, ref, lambda a: ctx.settings.controller.policies.get(a, ctx.settings.controller.policy),
                    list(ctx.classifier.taxonomy.names))
            else:
                raise GatewayError(404, f"Unknown report kind {kind!r}: preflight or rollout.", "invalid_request_error",
                                   "kind", "unknown_report")
        except reports.NotFound as e:
            raise GatewayError(404, str(e), "invalid_request_error", "ref", "not_found") from None
        if q.format == "json":
            return r
        if q.format == "md":
            return Response(report_md(r), media_type="text/markdown; charset=utf-8")
        return Response(report_html(r, stylesheet="/console/report.css"), media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS)

    table += [("GET", "/admin/reports/{kind}/{ref}", report, False,
               "A preflight (run id or version) or rollout (rollout id or alias) report: html, md or json", None)]
    table += [("GET", "/admin/whoami", whoami, False, "Who the token belongs to and its role", None),
              ("GET", "/admin/events", events, False, "The audit/event log (newest first; ?after=ID to follow)",
               None)]
    out = [Route(path, endpoint(ctx, writers if method != "GET" else readers, h, admin), methods=[method])
           for method, path, h, admin, _, _ in table]
    spec = orjson.dumps(openapi.document(table, queries={"/admin/events": EventsQuery,
                                                          "/admin/reports/{kind}/{ref}": ReportQuery}))

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    out.append(Route("/admin/openapi.json", openapi_json, methods=["GET"]))
    return out

