"""What a client can send, over real HTTP (raw sockets where the client must misbehave): malformed HTTP,
slow bodies, wrong methods, bodies the backend could not be sent. Each gets an answer in OpenAI's error
format with the right status and is counted; a bug is a counted 500 that leaves the connection usable."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from gateway.proxy.handler import ProxyHandler
from router.store import StateStore
from tests.support.metrics import scrape
from tests.support.raw_http import assert_openai_error, exchange, parse_response

ADMIN = {"authorization": "Bearer admin-secret"}
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(backend_factory, gateway_factory):
    stable, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft")
    versions = [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}]
    srv = gateway_factory(versions, [{"name": "bot", "stable": "v1"}], controller={"enabled": False},
                          timeouts={"request_body": 0.5})
    srv.stable = stable  # type: ignore[attr-defined]
    return srv


def rejected(gw, reason: str) -> float:
    return scrape(gw.url, "cliffguard_rejected_requests_total", reason=reason)


# -- malformed HTTP, slow bodies, methods ---------------------------------------------------------------


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
])
def test_malformed_http_gets_an_openai_400_and_the_connection_closes(gw, request_bytes):
    raw, closed = exchange(gw.url, request_bytes)
    status, headers, body = parse_response(raw)
    assert status == 400 and headers["content-type"] == "application/json" and closed
    assert_openai_error(body, "invalid_http")


def test_an_upgrade_request_is_served_as_http_then_the_connection_closes(gw):
    upgrade = (b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    raw, closed = exchange(gw.url, upgrade + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse_response(raw)
    assert status == 405 and headers["allow"] == "POST" and closed  # the pipelined request is not left hanging
    assert_openai_error(body, "method_not_allowed")


@pytest.mark.parametrize("path,headers", [("/v1/chat/completions", {}), ("/admin/aliases/bot/pause", ADMIN)])
def test_a_body_slower_than_the_deadline_gets_408_and_the_connection_closes(gw, path, headers):
    before = rejected(gw, "request_timeout")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    started = time.monotonic()
    raw, closed = exchange(gw.url, f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Type: application/json\r\n"
                                   "Content-Length: 500\r\n\r\n".encode() + b'{"model": "bot"', wait=10)
    status, response_headers, body = parse_response(raw)
    assert status == 408 and closed and time.monotonic() - started < 5  # the deadline is 0.5 s here
    assert response_headers["connection"] == "close"
    assert_openai_error(body, "request_timeout")
    if path.startswith("/v1/"):
        assert rejected(gw, "request_timeout") - before == 1


def test_a_body_sent_slowly_but_in_time_is_served(gw):
    body = json.dumps({"model": "bot", "messages": MSG}).encode()
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for piece in (body[:10], body[10:]):
            time.sleep(0.1)
            sock.sendall(piece)
        assert parse_response(sock.recv(65536))[0] == 200


def test_405_says_what_is_allowed_on_every_route(gw):
    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    expected = {path: {m.upper() for m in ops} for path, ops in spec["paths"].items()}
    expected |= {"/v1/chat/completions": {"POST"}, "/v1/completions": {"POST"}, "/v1/models": {"GET"},
                 "/healthz": {"GET"}, "/readyz": {"GET"}, "/metrics": {"GET"}, "/console": {"GET"},
                 "/admin/openapi.json": {"GET"}}
    for path, methods in expected.items():
        concrete = path.replace("{alias}", "bot").replace("{name}", "v1")
        if "GET" in methods:
            methods = methods | {"HEAD"}
        for method in ("PATCH", "DELETE", "PUT" if "PUT" not in methods else "POST"):
            r = httpx.request(method, f"{gw.url}{concrete}", headers=ADMIN)
            assert r.status_code == 405, (method, path, r.text)
            assert set(r.headers["allow"].split(", ")) == methods, (method, path, r.headers["allow"])
            assert r.json()["error"]["code"] == "method_not_allowed"


# -- bodies the backend cannot be sent -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [129, 254, 255, 600, 1023])
@pytest.mark.parametrize("field", ["messages", "tools", "metadata", "response_format", "anything"])
def test_json_nested_too_deep_in_any_field_is_a_counted_400(gw, field, depth):
    before = rejected(gw, "json_too_deep")
    nested = "[" * (depth - 1) + "]" * (depth - 1)  # inside the body object: `depth` levels in all
    body = {"model": "bot", "messages": MSG}
    text = json.dumps(body)[:-1] + f', "{field}": {nested}}}' if field != "messages" else (
        '{"model": "bot", "messages": [{"role": "user", "content": ' + "[" * (depth - 3) + "]" * (depth - 3) + "}]}")
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=text.encode())
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "json_too_deep" and error["param"] == field and "128 levels" in error["message"]
    assert rejected(gw, "json_too_deep") - before == 1


def test_json_as_deep_as_the_limit_is_forwarded(gw):
    text = '{"model": "bot", "messages": [{"role": "user", "content": "hi"}], "x": ' + "[" * 127 + "]" * 127 + "}"
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=text.encode())
    assert r.status_code == 200, r.text
    assert json.dumps(gw.stable.record.requests[-1]["x"]) == "[" * 127 + "]" * 127


def test_json_past_the_parsers_own_limit_is_a_400(gw):
    text = '{"model": "bot", "messages": [], "x": ' + "[" * 2000 + "]" * 2000 + "}"
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=text.encode())
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_integers_are_forwarded_exactly_or_refused(gw):
    def post(seed: str) -> httpx.Response:
        return httpx.post(f"{gw.url}/v1/chat/completions",
                          content=f'{{"model": "bot", "messages": [], "seed": {seed}}}'.encode())

    for seed in (2**64, -(2**63) - 1, 10**30):
        r = post(str(seed))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "integer_out_of_range" and r.json()["error"]["param"] == "seed"
        assert str(seed) in r.json()["error"]["message"]
    for seed in (2**64 - 1, 2**63, -(2**63), 2**53 + 1):
        assert post(str(seed)).status_code == 200
        forwarded = gw.stable.record.requests[-1]["seed"]
        assert type(forwarded) is int and forwarded == seed  # never a float
    assert post("1.8446744073709552e19").status_code == 200  # a float the client wrote stays a float
    assert gw.stable.record.requests[-1]["seed"] == 1.8446744073709552e19


def test_a_non_string_text_part_is_a_400_not_a_crash(gw):
    body = {"model": "bot", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content[0].text"


# -- a bug is counted, answered in OpenAI's format, and the connection stays usable ------------------------


def test_a_bug_on_the_proxy_path_is_a_counted_500(gw, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected bug")

    monkeypatch.setattr(ProxyHandler, "_route", broken)
    before = rejected(gw, "internal_error")
    with httpx.Client(base_url=gw.url) as h:
        r = h.post("/v1/chat/completions", json={"model": "bot", "messages": MSG})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "Traceback" not in r.text and "injected" not in r.text
        assert h.get("/healthz").status_code == 200
    assert rejected(gw, "internal_error") - before == 1


def test_a_bug_on_the_admin_path_keeps_the_connection_open(gw, monkeypatch):
    async def broken(self, count=100):
        raise RuntimeError("injected bug")

    monkeypatch.setattr(StateStore, "events", broken)
    before = rejected(gw, "internal_error")
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /admin/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer read-secret\r\n\r\n")
        status, _, body = parse_response(sock.recv(65536))
        assert status == 500 and json.loads(body)["error"]["code"] == "internal_error"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection still serves
        assert parse_response(sock.recv(65536))[0] == 200
    assert rejected(gw, "internal_error") - before == 1
