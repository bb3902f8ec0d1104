"""vLLM's other endpoints, answered by the alias's stable version: `POST /v1/embeddings`, `POST /tokenize`,
`POST /detokenize` and `GET /version`; and `GET /v1/models`, which lists the aliases with their stable
backend's fields (`max_model_len`, `root`, `parent`, ...).

No classification, split or judging: these answers say nothing about a version's quality, and an
embedding must come from one model for a whole index. The body is passed on with `model` set to the
served name, and the answer comes back with the alias as `model`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from gateway.auth import Authenticator
from gateway.errors import GatewayError, bad_request, model_not_found, unauthorized
from gateway.proxy.handler import Receive, Scope, Send, _read_body, _send_error
from gateway.proxy.model_name import ModelRewrite
from gateway.proxy.request import json_object, model_name, with_model
from gateway.proxy.upstream import UPSTREAM_ERRORS, Backends, Failure, classify, server_root
from monitoring import metrics as m
from router.live_state import LiveState
from router.split import Arm
from router.state import AliasState, RoutingSnapshot, VersionRecord


class Endpoint(NamedTuple):
    method: str
    upstream_path: str
    beside_v1: bool  # the backend serves it beside its base_url (.../v1), not under it


ENDPOINTS = {
    "/v1/embeddings": Endpoint("POST", "/embeddings", False),
    "/tokenize": Endpoint("POST", "/tokenize", True),
    "/detokenize": Endpoint("POST", "/detokenize", True),
    "/version": Endpoint("GET", "/version", True),
}
NO_CATEGORY = "none"  # metric label: these requests are not classified


class PassThrough:
    def __init__(self, state: LiveState, backends: Backends, auth: Authenticator, max_body: int) -> None:
        self.state = state
        self.backends = backends
        self.auth = auth
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id") or os.urandom(12).hex()
        ours = [(b"x-request-id", request_id.encode("latin-1"))]
        try:
            if self.auth.client(headers.get("authorization")) is None:
                raise unauthorized()
            body: dict[str, Any] | None = None
            if scope["method"] == "GET":  # /version: ?model=<alias>, optional with one alias
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                asked = query["model"][0] if query.get("model") else None
            else:
                body = json_object(await _read_body(receive, headers, self.max_body))
                asked = model_name(body, required=False)
            alias, version = _stable(self.state.snapshot, asked)
        except GatewayError as e:
            m.REJECTED.labels(e.code or e.type).inc()
            await _send_error(send, e, ours)
            return
        ours += [(b"x-cliffguard-version", version.name.encode()), (b"x-cliffguard-arm", Arm.STABLE.value.encode())]
        ep = ENDPOINTS[path]
        url = f"{server_root(version.base_url) if ep.beside_v1 else version.base_url}{ep.upstream_path}"
        status = 502
        try:
            resp = await self.backends.call(scope["method"], version, url,
                                            None if body is None else with_model(body, version.model))
            async with resp:
                answer = await resp.read()
                status = resp.status
                content_type = resp.header("content-type", "application/json")
        except UPSTREAM_ERRORS as e:
            failure = classify(e)
            m.UPSTREAM_ERRORS.labels(alias.name, version.name, failure.value).inc()
            status = 504 if failure == Failure.TIMEOUT else 502
            await _send_error(send, GatewayError(
                status, f"Backend for `{alias.name}` ({version.name}) is unavailable: {failure.value} "
                f"({type(e).__name__}).", "upstream_error", None, f"upstream_{failure.value}"), ours)
            return
        finally:
            m.REQUESTS.labels(alias.name, version.name, Arm.STABLE.value, NO_CATEGORY, path.rsplit("/", 1)[-1],
                              str(status)).inc()
            m.REQUEST_LATENCY.labels(alias.name, version.name, Arm.STABLE.value, NO_CATEGORY, "false").observe(
                time.perf_counter() - t0)
        if status == 200 and body is not None and (rewrite := ModelRewrite.for_request(
                version.model, alias.name, body)) is not None:
            answer = rewrite.body(answer)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode("latin-1")),
                                (b"content-length", str(len(answer)).encode()), *ours]})
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def _stable(snap: RoutingSnapshot, asked: str | None) -> tuple[AliasState, VersionRecord]:
    """The alias asked for (or the only one, when the request names none) and its stable version."""
    if asked is None:
        if len(snap.aliases) != 1:
            raise bad_request("Missing required parameter: 'model' (this gateway serves several models).",
                              "model", "missing_required_parameter")
        alias = next(iter(snap.aliases.values()))
    else:
        found = snap.aliases.get(asked)
        if found is None:
            raise model_not_found(asked)
        alias = found
    version = snap.versions.get(alias.stable)
    if version is None:
        raise GatewayError(503, f"Version {alias.stable!r} of `{alias.name}` is not registered.", "server_error",
                           None, "version_missing")
    return alias, version


async def model_list(state: LiveState, backends: Backends) -> dict[str, Any]:
    """`GET /v1/models`: every alias, with the fields its stable backend gives its served model (`id` is the
    alias). A backend that does not answer within 2 s gives a minimal entry instead."""
    snap = state.snapshot
    aliases = sorted(snap.aliases.items())
    stables = {name: snap.versions.get(a.stable) for name, a in aliases}
    urls = {v.base_url: v for v in stables.values() if v is not None}
    lists = await asyncio.gather(*(backends.models(v) for v in urls.values()), return_exceptions=True)
    by_url = {url: ls for url, ls in zip(urls, lists, strict=True) if isinstance(ls, list)}
    data = []
    for name, a in aliases:
        v = stables[name]
        entry = next((e for e in by_url.get(v.base_url, []) if e.get("id") == v.model), None) if v else None
        base = {"id": name, "object": "model", "created": int(a.updated_at), "owned_by": "cliffguard"}
        data.append({**base, **entry, "id": name} if entry else base)
    return {"object": "list", "data": data}
