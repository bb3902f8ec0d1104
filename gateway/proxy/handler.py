"""The OpenAI-compatible proxy: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/responses`.

A raw ASGI handler (no framework on the hot path). Per request: authenticate, read and check the body,
pick the arm (sticky split), forward to the version's backend, relay the answer, then record metrics
after the client has its last byte.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import Authenticator, Identity
from gateway.config import Settings
from gateway.errors import GatewayError, bad_request, model_not_found, unauthorized
from gateway.feedback import Answered, RequestLog
from gateway.proxy.disconnect import DisconnectWatcher
from gateway.proxy.http_client import ProtocolError, Response
from gateway.proxy.model_name import ModelRewrite
from gateway.proxy.request import CHAT, COMPLETIONS, RESPONSES, OpenAIRequest, parse, upstream_body
from gateway.proxy.sampling import RequestSampler
from gateway.proxy.sse import StreamScanner
from gateway.proxy.upstream import UPSTREAM_ERRORS, Backends, Failure, classify
from gateway.proxy.usage import body_usage
from monitoring import metrics as m
from monitoring.guards import GuardCounters
from router.classify import UNCLASSIFIED, InvalidCategory, Label, RequestClassifier, resolve, when_labelled
from router.live_state import LiveState
from router.split import Arm, choose_arm, stickiness_key
from router.state import AliasState, VersionRecord

log = logging.getLogger("cliffguard.proxy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATHS = {CHAT: "/chat/completions", COMPLETIONS: "/completions", RESPONSES: "/responses"}
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server", b"te",
     b"trailer", b"upgrade", b"proxy-authenticate", b"proxy-connection", b"content-encoding"}
)
FORCE_HEADER = "x-cliffguard-version"
FORCED = "forced"
LABEL_WAIT_AFTER_RESPONSE_S = 2.0  # the client has its answer by then; this only bounds the handler


@dataclass(slots=True)
class Exchange:
    """What one request did, for the response headers and the metrics recorded afterwards."""

    t0: float
    req: OpenAIRequest
    alias: AliasState
    version: VersionRecord
    arm: str
    request_id: str
    label: Label | asyncio.Future[Label]
    opt_out: bool = False
    client_request_id: str | None = None
    capture: list[bytes] | None = None  # the answer's bytes, kept when it may be sampled for judging
    upstream_s: float = 0.0  # time the backend held the request before its response head
    overhead_s: float | None = None  # the gateway's own time before the response head, once it is sent
    status: int = 0
    ttft_s: float | None = None
    finished: float = 0.0  # when the client had the whole answer
    usage: dict[str, Any] | None = None
    fallback_from: str | None = None
    fallback_failure: Failure | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class ClientGone(Exception):
    """The client disconnected; the upstream request is being cancelled."""


class ProxyHandler:
    def __init__(self, settings: Settings, state: LiveState, backends: Backends, auth: Authenticator,
                 classifier: RequestClassifier, sampler: RequestSampler | None,
                 guards: GuardCounters | None = None, requests: RequestLog | None = None) -> None:
        self.settings = settings
        self.state = state
        self.backends = backends
        self.auth = auth
        self.classifier = classifier
        self.sampler = sampler
        self.guards = guards
        self.requests = requests
        self.opt_out_header = settings.judging.sampling.opt_out_header
        self.pin_wait_s = settings.classifier.pin_wait_ms / 1000
        self.max_body = settings.limits.max_body_bytes
        self.sticky_order = settings.routing.sticky_keys
        # request ids: 96 random bits from a generator seeded per process (os.urandom per request is a
        # system call, ~5% of the worker's time); nobody outside the gateway chooses or predicts them usefully
        self._ids = random.Random(os.urandom(16))

    async def __call__(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        t0 = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # ours alone decides sampling and exactly-once judging; a client's X-Request-Id is kept for correlation
        request_id = f"{self._ids.getrandbits(96):024x}"
        try:
            ident = self.auth.client(headers.get("authorization"))
            if ident is None:
                raise unauthorized()
            raw = await _read_body(receive, headers, self.max_body)
            req = parse(raw, endpoint)
            try:
                label = self.classifier.begin(headers, req.conversation)  # the model runs while we forward
            except InvalidCategory as e:
                raise bad_request(str(e), e.source, "invalid_category") from None
            ex = self._route(req, headers, ident, t0, request_id, label)
            if ex.arm == Arm.CANDIDATE and ex.alias.pinned_categories:
                await self._apply_pins(ex)
        except GatewayError as e:
            m.child(m.REJECTED, e.code or e.type).inc()
            await _send_error(send, e, [(b"x-request-id", request_id.encode("latin-1"))])
            return
        except ClientGone:
            return
        await self._serve(ex, scope, receive, send)

    # -- routing ---------------------------------------------------------------------------------

    def _route(
        self, req: OpenAIRequest, headers: dict[str, str], ident: Identity, t0: float, request_id: str,
        label: Label | asyncio.Future[Label],
    ) -> Exchange:
        snap = self.state.snapshot
        alias = snap.aliases.get(req.model)
        if alias is None:
            raise model_not_found(req.model)
        forced = headers.get(FORCE_HEADER)
        if forced:
            if not ident.is_admin:
                raise GatewayError(403, f"The {FORCE_HEADER} header needs an admin token.",
                                   "permission_error", FORCE_HEADER, "forbidden")
            version = snap.versions.get(forced)
            if version is None:
                raise bad_request(f"Unknown version {forced!r} in {FORCE_HEADER}.", FORCE_HEADER, "unknown_version")
            arm = FORCED
        else:
            weight = alias.effective_weight_bp()
            key = stickiness_key(self.sticky_order, headers, req.conversation) if weight else None
            # no stickiness key: a per-request coin (the request id is random)
            arm = choose_arm(alias.name, alias.rollout_id, key or request_id, weight).value
            name = alias.candidate if arm == Arm.CANDIDATE and alias.candidate else alias.stable
            version = snap.versions.get(name)
            if version is None:
                raise GatewayError(503, f"Version {name!r} of `{alias.name}` is not registered.",
                                   "server_error", None, "version_missing")
        ex = Exchange(t0, req, alias, version, arm, request_id, label, opt_out=self.opt_out_header in headers,
                      client_request_id=headers.get("x-request-id"))
        if self.sampler is not None and not ex.opt_out and self.sampler.wants_capture(alias):
            ex.capture = []
        return ex

    async def _apply_pins(self, ex: Exchange) -> None:
        """A pinned category goes to stable: the only case where routing waits for the classifier. A label
        not ready within pin_wait_ms also goes to stable (fail closed: it may be a pinned category)."""
        label = await resolve(ex.label, self.pin_wait_s)
        stable = self.state.snapshot.versions.get(ex.alias.stable)
        if stable is not None and (label.category in ex.alias.pinned_categories or label.category == UNCLASSIFIED):
            ex.version, ex.arm = stable, Arm.STABLE.value
            m.child(m.PIN_ROUTED, ex.alias.name, "pinned" if label.category != UNCLASSIFIED else "label_late").inc()
        if label.category != UNCLASSIFIED:  # a late label is still awaited after the response
            ex.label = label

    # -- forwarding ------------------------------------------------------------------------------

    async def _serve(self, ex: Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        m.child(m.IN_FLIGHT, ex.alias.name).inc()
        task = asyncio.current_task()
        assert task is not None
        watcher = DisconnectWatcher(scope, receive, task)
        resp: Response | None = None
        try:
            opened = await self._open_upstream(ex)
            if isinstance(opened, GatewayError):
                ex.status = opened.status
                watcher.stop()
                await _send_error(send, opened, self._our_headers(ex))
            else:
                resp = opened
                if ex.req.stream and resp.status == 200:
                    await self._relay_stream(ex, resp, send, watcher)
                else:
                    await self._relay_body(ex, resp, send, watcher)
        except asyncio.CancelledError:
            if not watcher.fired:
                raise
            task.uncancel()
            m.child(m.CLIENT_DISCONNECTS, ex.alias.name, ex.version.name).inc()
            ex.status = 499  # nginx's "client closed request"
        finally:
            watcher.stop()
            if resp is not None:
                # a finished answer returns its connection to the pool; an unfinished one (client gone,
                # backend failed) drops it, which makes the backend abort the generation
                if watcher.fired or ex.status >= 500:
                    resp.close()
                else:
                    resp.release()
            m.child(m.IN_FLIGHT, ex.alias.name).dec()
        ex.finished = time.perf_counter()
        # in the loop's next step: the answer's last writes are corked until the end of this one
        # (gateway/processes/http_protocol.py), and metrics, guards and sampling must not hold them back
        asyncio.get_running_loop().call_soon(when_labelled, ex.label, LABEL_WAIT_AFTER_RESPONSE_S,
                                             lambda label: self._after_response(ex, label))

    async def _open_upstream(self, ex: Exchange) -> Response | GatewayError:
        """Send to the chosen version. A candidate failing before its first byte (no connection, timeout, 5xx,
        or a 4xx: e.g. 404 when its LoRA adapter vanished after a vLLM restart) is retried on stable."""
        path = PATHS[ex.req.endpoint]
        err: BaseException | None = None
        while True:
            t_sent = time.perf_counter()
            try:
                resp = await self.backends.send(ex.version, path, upstream_body(ex.req, ex.version.model))
                failure = _status_failure(resp.status, ex.arm == Arm.CANDIDATE)
            except UPSTREAM_ERRORS as e:
                resp, failure, err = None, classify(e), e
            ex.upstream_s = time.perf_counter() - t_sent
            if ex.fallback_from is not None:
                self._count_candidate_failure(ex, resp)
            if failure is None:
                assert resp is not None
                return resp
            m.child(m.UPSTREAM_ERRORS, ex.alias.name, ex.version.name, failure.value).inc()
            stable = self.state.snapshot.versions.get(ex.alias.stable)
            if ex.arm == Arm.CANDIDATE and stable is not None and ex.fallback_from is None:
                if resp is not None:
                    resp.close()
                m.child(m.FALLBACKS, ex.alias.name, ex.version.name, stable.name, failure.value).inc()
                log.warning("candidate %s failed (%s); retrying on stable %s", ex.version.name, failure,
                            stable.name)
                ex.fallback_from, ex.fallback_failure = ex.version.name, failure
                ex.version, ex.arm = stable, Arm.STABLE.value
                continue
            if resp is not None:  # stable's own 4xx/5xx answer goes to the client as the backend wrote it
                return resp
            return GatewayError(
                504 if failure == Failure.TIMEOUT else 502,
                f"Backend for `{ex.alias.name}` ({ex.version.name}) is unavailable: "
                f"{failure.value} ({type(err).__name__}).", "upstream_error", None, f"upstream_{failure.value}")

    def _count_candidate_failure(self, ex: Exchange, stable_resp: Response | None) -> None:
        """A failure hidden from the user by the fallback is still the candidate's error, unless stable
        refuses the request in the same way (then the request, not the candidate, was at fault)."""
        if self.guards is None or ex.fallback_from is None:
            return
        same_refusal = (ex.fallback_failure == Failure.HTTP_4XX and stable_resp is not None
                        and 400 <= stable_resp.status < 500)
        if not same_refusal:
            self.guards.record(ex.alias.name, ex.alias.rollout_id, ex.fallback_from, error=True, empty=False,
                               ttft_s=None)

    def _our_headers(self, ex: Exchange) -> list[tuple[bytes, bytes]]:
        ex.overhead_s = overhead_s = (time.perf_counter() - ex.t0) - ex.upstream_s
        return [
            (b"x-cliffguard-version", ex.version.name.encode()),
            (b"x-cliffguard-arm", ex.arm.encode()),
            (b"x-cliffguard-overhead-ms", f"{overhead_s * 1000:.3f}".encode()),
            (b"x-request-id", ex.request_id.encode("latin-1")),
        ]

    def _start(self, ex: Exchange, resp: Response, extra: list[tuple[bytes, bytes]]) -> Message:
        ex.status = resp.status
        upstream = [(k, v) for k, v in resp.raw_headers if k.lower() not in _HOP_BY_HOP]
        return {"type": "http.response.start", "status": resp.status,
                "headers": upstream + extra + self._our_headers(ex)}

    async def _relay_body(
        self, ex: Exchange, resp: Response, send: Send, watcher: DisconnectWatcher
    ) -> None:
        try:
            body = await resp.read()
        except UPSTREAM_ERRORS as e:
            m.child(m.UPSTREAM_ERRORS, ex.alias.name, ex.version.name, classify(e).value).inc()
            ex.status = 502
            watcher.stop()
            await _send_error(send, GatewayError(502, f"Backend failed while answering: {type(e).__name__}.",
                                                 "upstream_error", None, "upstream_failed"), self._our_headers(ex))
            return
        if resp.status == 200 and (rewrite := ModelRewrite.for_request(ex.version.model, ex.alias.name,
                                                                         ex.req.body)) is not None:
            body = rewrite.body(body)  # answers name the alias the client asked for
        if ex.capture is not None:
            ex.capture.append(body)
        start = self._start(ex, resp, [(b"content-length", str(len(body)).encode())])
        watcher.stop()
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        if resp.status == 200:  # after the client has it: usage is read off the hot path
            ex.usage = body_usage(body)

    async def _relay_stream(
        self, ex: Exchange, resp: Response, send: Send, watcher: DisconnectWatcher
    ) -> None:
        scanner = StreamScanner.of(ex.req, ModelRewrite.for_request(ex.version.model, ex.alias.name, ex.req.body))
        await send(self._start(ex, resp, []))
        try:
            async for chunk in resp.chunks():
                out, first = scanner.feed(chunk)
                if first:
                    ex.ttft_s = time.perf_counter() - ex.t0
                if out:
                    if ex.capture is not None:
                        ex.capture.append(out)
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = scanner.flush()
            if not scanner.done:
                raise ProtocolError("stream ended before its final event")
        except UPSTREAM_ERRORS as e:
            # after the first byte there is no fallback: end the stream with an error event
            reason = Failure.MIDSTREAM.value
            m.child(m.UPSTREAM_ERRORS, ex.alias.name, ex.version.name, reason).inc()
            ex.status = 502
            tail = scanner.error_tail(f"Backend stream failed: {type(e).__name__}: {e}")
        watcher.stop()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        ex.usage = scanner.usage  # after the client has its last byte

    # -- after the response ----------------------------------------------------------------------

    def _after_response(self, ex: Exchange, label: Label) -> None:
        """Metrics, guards and sampling, once the label is known (a callback: the request is over)."""
        try:
            self._record(ex, label)
            if ex.capture is not None and ex.status == 200 and self.sampler is not None:
                self.sampler.consider(request_id=ex.request_id, alias=ex.alias, version=ex.version, arm=ex.arm,
                                      endpoint=ex.req.endpoint, body=ex.req.body, opt_out=ex.opt_out,
                                      label=label, answer_bytes=ex.capture, stream=ex.req.stream,
                                      client_request_id=ex.client_request_id)
        except Exception:  # outside the request's task: nothing else would count it
            m.child(m.REJECTED, "internal_error").inc()
            log.exception("recording request %s failed", ex.request_id)

    def _record(self, ex: Exchange, label: Label) -> None:
        a, v, arm, cat = ex.alias.name, ex.version.name, ex.arm, label.category
        latency = ex.finished - ex.t0
        m.child(m.CLASSIFICATIONS, cat, label.layer).inc()
        m.child(m.CLASSIFIER_CONFIDENCE, a, arm, label.layer).observe(label.confidence)
        m.child(m.REQUESTS, a, v, arm, cat, ex.req.endpoint, str(ex.status)).inc()
        m.child(m.REQUEST_LATENCY, a, v, arm, cat, "true" if ex.req.stream else "false").observe(latency)
        if ex.overhead_s is not None:
            m.child(m.OVERHEAD, a).observe(ex.overhead_s)
        if ex.ttft_s is not None:
            m.child(m.TTFT, a, v, arm, cat).observe(ex.ttft_s)
        if ex.usage:
            for kind in ("prompt", "completion"):
                n = ex.usage.get(f"{kind}_tokens")
                if isinstance(n, int) and n > 0:
                    m.child(m.TOKENS, a, v, arm, cat, kind).inc(n)
        if self.requests is not None and ex.status == 200:  # for feedback on it: one append, written later
            self.requests.record(ex.request_id, Answered(a, ex.alias.rollout_id, v, arm, cat), ex.req.body)
        if self.guards is not None and ex.alias.candidate and arm in (Arm.STABLE, Arm.CANDIDATE):
            empty = ex.status == 200 and ex.usage is not None and ex.usage.get("completion_tokens") == 0
            self.guards.record(a, ex.alias.rollout_id, v, error=ex.status >= 500, empty=empty, ttft_s=ex.ttft_s,
                               latency_s=latency if ex.status == 200 else None,
                               category=cat if arm == Arm.CANDIDATE else None)


def _status_failure(status: int, candidate: bool) -> Failure | None:
    if status >= 500:
        return Failure.HTTP_5XX
    if status >= 400 and candidate:
        return Failure.HTTP_4XX
    return None


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise bad_request("Invalid Content-Length header.", None, "invalid_content_length") from None
        if size > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the limit of {limit} bytes.",
                        "invalid_request_error", None, "request_too_large")


async def _send_error(send: Send, e: GatewayError, extra: list[tuple[bytes, bytes]]) -> None:
    body = e.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if e.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": e.status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body, "more_body": False})

