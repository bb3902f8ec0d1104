"""Property-based fuzz of the proxy's body handling (hypothesis, bounded): whatever the body, the gateway
answers a 4xx in OpenAI's format or serves it, never a 5xx, never an unhandled exception; and what it
forwards is what the client sent (integers exact, strings and nesting untouched), model name aside."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.proxy.request import CHAT, COMPLETIONS, parse, upstream_body
from tests.fuzz.json_strategies import bodies
from tests.support.metrics import scrape

ENDPOINTS = {CHAT: "/v1/chat/completions", COMPLETIONS: "/v1/completions"}


def _exact(raw: bytes) -> object:
    return json.loads(raw)  # Python's parser: integers of any size, exactly


@given(raw=bodies(), endpoint=st.sampled_from([CHAT, COMPLETIONS]))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_parse_refuses_with_400_or_forwards_exactly(raw: bytes, endpoint: str) -> None:
    try:
        req = parse(raw, endpoint)
    except GatewayError as e:
        assert e.status == 400 and e.code and e.message
        return
    forwarded = _exact(upstream_body(req, "served-name"))
    sent = _exact(raw)
    assert isinstance(forwarded, dict) and isinstance(sent, dict)
    assert forwarded.pop("model") == "served-name"
    sent.pop("model")
    if req.stream and not req.wants_usage:  # the gateway asks for usage itself
        assert forwarded.pop("stream_options")["include_usage"] is True
        sent.pop("stream_options", None)
    assert forwarded == sent


_VISIBLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(str.strip)
HEADERS = st.fixed_dictionaries({}, optional={
    "x-cliffguard-category": _VISIBLE | st.sampled_from(["math", "Coding"]),
    "x-session-id": _VISIBLE,
    "x-cliffguard-version": st.sampled_from(["v1", "v2", "v9", ""]),
    "authorization": st.sampled_from(["Bearer admin-secret", "Bearer read-secret", "Bearer nope", "Basic x"]),
    "content-type": st.sampled_from(["application/json", "text/plain", ""]),
})


@pytest.fixture(scope="module")
def internal_errors(fuzz_gateway) -> Callable[[], float]:  # type: ignore[no-untyped-def]
    """Internal errors counted since the fuzz began (the counter is shared by every test in the process)."""
    def count() -> float:
        return scrape(fuzz_gateway.url, "cliffguard_rejected_requests_total", reason="internal_error")
    before = count()
    return lambda: count() - before


@pytest.fixture(scope="module")
def client(fuzz_gateway, internal_errors):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=fuzz_gateway.url, timeout=30) as c:  # one keep-alive connection, reused
        yield c


@given(raw=bodies(), endpoint=st.sampled_from(sorted(ENDPOINTS.values())), headers=HEADERS)
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_proxy_answers_no_5xx(client: httpx.Client, raw: bytes, endpoint: str, headers: dict[str, str]) -> None:
    r = client.post(endpoint, content=raw, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text[:500], raw[:300])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["message"] and error["type"], r.text
    else:
        assert r.headers["x-cliffguard-version"] in ("v1", "v2")


def test_no_unhandled_exception_during_the_fuzz(client, internal_errors) -> None:  # type: ignore[no-untyped-def]
    """Runs after the fuzz in this module: any exception on the proxy path is counted, so none may be."""
    assert internal_errors() == 0
