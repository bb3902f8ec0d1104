"""The ASGI application: the proxy endpoints (and vLLM's pass-through endpoints) are dispatched directly
(hot path, no framework); everything else (models, health, metrics, admin) goes through a small Starlette
app."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import admin, console
from gateway.config import Settings, load_settings
from gateway.context import GatewayContext
from gateway.errors import GatewayError, unauthorized
from gateway.health import readiness
from gateway.proxy.handler import Message, ProxyHandler, Receive, Scope, Send
from gateway.proxy.passthrough import ENDPOINTS as PASSTHROUGH
from gateway.proxy.passthrough import PassThrough, model_list
from gateway.proxy.request import CHAT, COMPLETIONS, RESPONSES
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
        self.web: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = _PROXY_PATHS.get(scope["path"])
            if endpoint is not None and scope["method"] == "POST" and self.proxy is not None:
                await self._guarded(self.proxy, scope, receive, send, endpoint)
                return
            if (ep := PASSTHROUGH.get(scope["path"])) and ep.method == scope["method"] and self.passthrough:
                await self._guarded(self.passthrough, scope, receive, send)
                return
            assert self.web is not None
            await self.web(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    @staticmethod
    async def _guarded(proxy: ProxyHandler | PassThrough, scope: Scope, receive: Receive, send: Send,
                       *endpoint: str) -> None:
        """A bug must never crash the worker or show a traceback: answer 500 in OpenAI's format."""
        started = False

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            started = True
            await send(msg)

        try:
            await proxy(scope, receive, tracking_send, *endpoint)
        except Exception:
            log.exception("proxy failed on %s", scope["path"])
            if not started:
                body = GatewayError(500, "Internal gateway error.", "server_error", None, "internal_error").body()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})

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
                if self.ctx:
                    await self.ctx.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        ctx = await GatewayContext.start(self.settings)
        self.ctx = ctx
        self.proxy = ProxyHandler(ctx.settings, ctx.state, ctx.backends, ctx.auth, ctx.classifier, ctx.sampler,
                                  ctx.guards)
        self.passthrough = PassThrough(ctx.state, ctx.backends, ctx.auth, ctx.settings.limits.max_body_bytes)
        self.web = _web_app(ctx)


def _web_app(ctx: GatewayContext) -> Starlette:
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
        status, body = await readiness(ctx)
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def prometheus(request: Request) -> Response:
        payload, content_type = metrics.render(rollout_metrics)
        return Response(payload, media_type=content_type)

    async def not_found(request: Request, exc: Exception) -> Response:
        e = GatewayError(404, f"Unknown path {request.method} {request.url.path}.", "invalid_request_error",
                         None, "not_found")
        return Response(e.body(), status_code=404, media_type="application/json")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        e = GatewayError(405, f"Method {request.method} not allowed on {request.url.path}.",
                         "invalid_request_error", None, "method_not_allowed")
        return Response(e.body(), status_code=405, media_type="application/json")

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        e = GatewayError(500, "Internal gateway error.", "server_error", None, "internal_error")
        return Response(e.body(), status_code=500, media_type="application/json")

    handlers: dict[Any, Any] = {404: not_found, 405: not_allowed, 500: server_error}
    async def proxied(request: Request) -> Response:  # reached only by non-POST methods: 405
        raise AssertionError("POST is dispatched before Starlette")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", proxied, methods=["POST"]),
            Route("/v1/completions", proxied, methods=["POST"]),
            Route("/v1/responses", proxied, methods=["POST"]),
            *(Route(path, proxied, methods=["POST"]) for path, ep in PASSTHROUGH.items() if ep.method == "POST"),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            *admin.routes(ctx),
            *console.routes(),
        ],
        exception_handlers=handlers,
    )


def create_app(settings: Settings | None = None) -> GatewayApp:
    """App factory; with no settings, loads the file named by CLIFFGUARD_CONFIG (and the environment)."""
    return GatewayApp(settings or load_settings())
