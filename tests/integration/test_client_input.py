"""What a client can send, over real HTTP: bodies the backend could not be sent. Each gets an answer in
OpenAI's error format with the right status and is counted."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.metrics import scrape

ADMIN = {"authorization": "Bearer admin-secret"}
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(backend_factory, gateway_factory):
    stable, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft")
    versions = [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}]
    srv = gateway_factory(versions, [{"name": "bot", "stable": "v1"}], controller={"enabled": False})
    srv.stable = stable  # type: ignore[attr-defined]
    return srv


def rejected(gw, reason: str) -> float:
    return scrape(gw.url, "cliffguard_rejected_requests_total", reason=reason)


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
