"""The web console at /console: static files served by the gateway (no build step, no CDN).

Protection: a strict Content-Security-Policy (same-origin scripts and styles only, no framing), the
X-Frame-Options DENY header against clickjacking, and no cookies at all: the console sends its token in
the Authorization header, which another site cannot make a browser send, so cross-site request forgery
has nothing to ride on (the admin API also refuses mutations from a foreign Origin)."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitoring.report import STYLESHEET

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_FILES = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8"}


def routes() -> list[Route]:
    files = {name: resources.files("gateway.console").joinpath("static", name).read_bytes() for name in _FILES}

    def serve(name: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            return Response(files[name], media_type=_FILES[name], headers=SECURITY_HEADERS)
        return handler

    async def report_css(request: Request) -> Response:
        return Response(STYLESHEET, media_type="text/css; charset=utf-8", headers=SECURITY_HEADERS)

    return [Route("/console", serve("index.html"), methods=["GET"]),
            Route("/console/report.css", report_css, methods=["GET"]),
            Route("/console/", serve("index.html"), methods=["GET"]),
            *(Route(f"/console/{n}", serve(n), methods=["GET"]) for n in ("console.js", "console.css"))]
