"""The ASGI application: the proxy endpoints (and vLLM's pass-through endpoints) are dispatched directly
(hot path, no framework); everything else (models, health, metrics, admin) goes through a small Starlette
app."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import admin, console
from gateway.body_deadline import BodyDeadlines
from gateway.config import Settings, load_settings
from gateway.context import GatewayContext
from gateway.errors import GatewayError, unauthorized
from gateway.feedback import FeedbackEndpoint
from gateway.health import BackendProbes, readiness
from gateway.proxy.handler import Message, ProxyHandler, Receive, Scope, Send
from gateway.proxy.passthrough import ENDPOINTS as PASSTHROUGH
from gateway.proxy.passthrough import PassThrough, model_list
from gateway.proxy.request import CHAT, COMPLETIONS, RESPONSES
from judges.redaction import Redactor
from monitoring import metrics
from monitoring.rollout_metrics import RolloutCollector

log = logging.getLogger("cliffguard.app")

_PROXY_PATHS = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/responses": RESPONSES}


class GatewayApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx: GatewayContext | None = None
        self.proxy: ProxyHandler | None = None
        self.passthrough: PassThrough | None = None
        self.probes: BackendProbes | None = None
        self.deadlines: BodyDeadlines | None = None
        self.web: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = _PROXY_PATHS.get(scope["path"]) if scope["method"] == "POST" else None
            await self._guarded(scope, receive, send, endpoint)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, endpoint: str | None) -> None:
        """Every HTTP request runs here: the proxy endpoints and vLLM's pass-through ones are dispatched
        directly (hot path, no framework), everything else through Starlette. A bug never crashes the worker
        or shows a traceback: it is logged, counted, and answered with a 500 in OpenAI's format when nothing
        was sent yet. It is not re-raised, so the connection stays usable (uvicorn closes it on an exception
        that reaches it). The body must arrive within `timeouts.request_body`."""
        started = False
        assert self.deadlines is not None
        body = self.deadlines.wrap(receive)

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if not started:
                started = True
                if body.expired:  # a client too slow to send its body does not keep the connection
                    msg["headers"] = [*msg.get("headers", ()), (b"connection", b"close")]
            await send(msg)

        try:
            ep = PASSTHROUGH.get(scope["path"])
            if endpoint is not None and self.proxy is not None:
                await self.proxy(scope, body, tracking_send, endpoint)
            elif ep is not None and ep.method == scope["method"] and self.passthrough is not None:
                await self.passthrough(scope, body, tracking_send)
            else:
                assert self.web is not None
                await self.web(scope, body, tracking_send)
        except Exception:
            metrics.REJECTED.labels("internal_error").inc()
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                await tracking_send({"type": "http.response.start", "status": 500,
                                     "headers": [(b"content-type", b"application/json")]})
                await tracking_send({"type": "http.response.body", "body": _INTERNAL.body()})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg: Message = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.deadlines:
                    await self.deadlines.stop()
                if self.probes:
                    await self.probes.stop()
                if self.ctx:
                    await self.ctx.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        self.deadlines = BodyDeadlines(self.settings.timeouts.request_body)
        self.deadlines.start()
        ctx = await GatewayContext.start(self.settings)
        self.ctx = ctx
        self.proxy = ProxyHandler(ctx.settings, ctx.state, ctx.backends, ctx.auth, ctx.classifier, ctx.sampler,
                                  ctx.guards, ctx.requests)
        self.passthrough = PassThrough(ctx.state, ctx.backends, ctx.auth, ctx.settings.limits.max_body_bytes)
        self.probes = BackendProbes(ctx.state, ctx.backends)
        self.probes.start()
        self.web = _web_app(ctx, self.probes)


_INTERNAL = GatewayError(500, "Internal gateway error.", "server_error", None, "internal_error")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _web_app(ctx: GatewayContext, probes: BackendProbes) -> Starlette:
    started = time.time()
    rollout_metrics = RolloutCollector(ctx.state, ctx.analyses)

    async def models(request: Request) -> Response:
        if ctx.auth.client(request.headers.get("authorization")) is None:
            e = unauthorized()
            return Response(e.body(), status_code=401, media_type="application/json")
        return JSONResponse(await model_list(ctx.state, ctx.backends))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime_s": round(time.time() - started, 1)})

    async def readyz(request: Request) -> Response:
        ident = ctx.auth.identify(request.headers.get("authorization"))
        detailed = ident is not None and ident.role in ("read", "admin")  # details name internal hosts
        status, body = await readiness(ctx.state, probes, request.query_params.get("alias"), detailed)
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def prometheus(request: Request) -> Response:
        payload, content_type = metrics.render(rollout_metrics)
        return Response(payload, media_type=content_type)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"Unknown path {request.method} {request.url.path}."
        elif exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(routes, request.url.path))  # every route on the path
            message = f"Method {request.method} not allowed on {request.url.path}; allowed: {headers['Allow']}."
        else:
            message = exc.detail
        e = GatewayError(exc.status_code, message, "invalid_request_error", None,
                         _HTTP_CODES.get(exc.status_code, "http_error"))
        return Response(e.body(), status_code=e.status, headers=headers, media_type="application/json")

    async def server_error(request: Request, exc: Exception) -> Response:
        # logged and counted by GatewayApp._guarded, which the exception reaches next
        return Response(_INTERNAL.body(), status_code=500, media_type="application/json")

    async def proxied(request: Request) -> Response:  # reached only by non-POST methods: 405
        raise AssertionError("POST is dispatched before Starlette")

    routes = [
        Route("/v1/chat/completions", proxied, methods=["POST"]),
        Route("/v1/completions", proxied, methods=["POST"]),
        Route("/v1/responses", proxied, methods=["POST"]),
        # pass-through endpoints are dispatched before Starlette; listed here for 405's Allow
        *(Route(path, proxied, methods=[ep.method]) for path, ep in PASSTHROUGH.items()),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/feedback", FeedbackEndpoint(ctx.store.redis, ctx.settings.key_prefix, ctx.settings.feedback,
                                               ctx.auth, ctx.requests,
                                               Redactor.from_config(ctx.settings.judging.sampling)).handle,
              methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *admin.routes(ctx),
        *console.routes(),
    ]
    handlers: dict[Any, Any] = {HTTPException: http_error, 500: server_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def _allowed(routes: list[Route], path: str) -> list[str]:
    return sorted({m for r in routes if r.methods and r.path_regex.match(path) for m in r.methods})


def create_app(settings: Settings | None = None) -> GatewayApp:
    """App factory; with no settings, loads the file named by CLIFFGUARD_CONFIG (and the environment)."""
    return GatewayApp(settings or load_settings())
