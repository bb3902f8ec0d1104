"""The proxy over real HTTP, driven by the official openai client, against scripted backends."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.metrics import scrape


def two_versions(backend_factory, weight_pct=0.0, **cand_script):
    stable, s_srv = backend_factory("stable", model="base")
    cand, c_srv = backend_factory("cand", model="ft", **cand_script)
    versions = [{"name": "v1", "base_url": f"{s_srv.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{c_srv.url}/v1", "model": "ft"}]
    aliases = [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": weight_pct}]
    return stable, cand, versions, aliases


def client(gw, key="k") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=20)


def test_chat_and_completions_streamed_and_not(backend_factory, gateway_factory):
    stable, cand, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(model="bot", messages=[{"role": "user", "content": "hi"}])
    chat = raw.parse()
    assert chat.choices[0].message.content.startswith("hello")
    assert raw.headers["x-cliffguard-version"] == "v1" and raw.headers["x-cliffguard-arm"] == "stable"
    assert float(raw.headers["x-cliffguard-overhead-ms"]) >= 0
    assert stable.record.requests[-1]["model"] == "base"  # public name rewritten to the served one

    chunks = list(c.chat.completions.create(model="bot", stream=True,
                                             messages=[{"role": "user", "content": "hi"}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("hello")
    assert all(ch.usage is None for ch in chunks)  # the usage chunk the gateway asked for is not forwarded
    assert stable.record.requests[-1]["stream_options"] == {"include_usage": True}

    comp = c.completions.create(model="bot", prompt="say")
    assert comp.choices[0].text and comp.usage.completion_tokens == 5
    streamed = list(c.completions.create(model="bot", prompt="say", stream=True,
                                         stream_options={"include_usage": True}))
    assert streamed[-1].usage.completion_tokens == 5  # kept when the client asked for it


def test_models_lists_aliases_and_unknown_model_is_openai_404(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)
    c = client(gw)
    assert [m.id for m in c.models.list()] == ["bot"]
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"


def test_upstream_4xx_passes_through_verbatim(backend_factory, gateway_factory):
    fb, srv = backend_factory("s", model="other-name")  # the backend does not serve what the version says
    gw = gateway_factory([{"name": "v1", "base_url": f"{srv.url}/v1", "model": "base"}],
                         [{"name": "bot", "stable": "v1"}])
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": []})
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "The model `base` does not exist.", "type": "NotFoundError",
                                  "param": "model", "code": 404}}


def test_client_keys_and_authorization_never_forwarded(backend_factory, gateway_factory):
    stable, _, versions, aliases = two_versions(backend_factory)
    versions[0]["api_key_env"] = "CG_TEST_BACKEND_KEY"
    import os
    os.environ["CG_TEST_BACKEND_KEY"] = "backend-secret"
    gw = gateway_factory(versions, aliases, auth={"api_keys": [{"name": "app", "key": "client-secret"}]})
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, "wrong").chat.completions.create(model="bot", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "invalid_api_key"
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    client(gw, "client-secret").chat.completions.create(model="bot", messages=[{"role": "user", "content": "x"}])
    assert stable.record.headers[-1]["authorization"] == "Bearer backend-secret"
    assert all("client-secret" not in str(h) for h in stable.record.headers)


def test_forced_version_needs_admin_token(backend_factory, gateway_factory):
    _, cand, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)
    body = {"model": "bot", "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"x-cliffguard-version": "v2"})
    assert r.status_code == 403 and r.json()["error"]["param"] == "x-cliffguard-version"
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=body,
                   headers={"x-cliffguard-version": "v2", "authorization": "Bearer admin-secret"})
    assert r.status_code == 200 and r.headers["x-cliffguard-version"] == "v2"
    assert r.headers["x-cliffguard-arm"] == "forced" and cand.record.requests
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=body,
                   headers={"x-cliffguard-version": "nope", "authorization": "Bearer admin-secret"})
    assert r.status_code == 400


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b'{"model": "bot", "messages": "hi"}', 400, "invalid_type"),
    (b'{"messages": []}', 400, "missing_required_parameter"),
    (b'{"model": "bot", "messages": [], "stream": 1}', 400, "invalid_type"),
    (b'{"model": "bot", "messages": [], "pad": "' + b"x" * 300_000 + b'"}', 413, "request_too_large"),
])
def test_bad_input_gets_openai_errors_and_worker_survives(backend_factory, gateway_factory, body, status, code):
    _, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases, limits={"max_body_bytes": 200_000})
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "Traceback" not in r.text
    ok = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": []})
    assert ok.status_code == 200


def test_chunked_oversized_body_is_413(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases, limits={"max_body_bytes": 10_000})

    def gen():
        yield b'{"model": "bot", "messages": [], "pad": "'
        for _ in range(20):
            yield b"y" * 1000
        yield b'"}'
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=gen())  # no content-length: chunked
    assert r.status_code == 413


def test_wrong_method_and_path(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)
    assert httpx.get(f"{gw.url}/v1/chat/completions").status_code == 405
    r = httpx.get(f"{gw.url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_sticky_split_through_the_gateway(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory, weight_pct=50)
    gw = gateway_factory(versions, aliases)
    with httpx.Client(base_url=gw.url) as h:
        for user in ("ann", "bob", "cid", "dee"):
            arms = {h.post("/v1/chat/completions", json={"model": "bot", "user": user, "messages": []}
                           ).headers["x-cliffguard-arm"] for _ in range(5)}
            assert len(arms) == 1
        seen = {h.post("/v1/chat/completions", json={"model": "bot", "messages": []},
                       headers={"x-session-id": f"s{i}"}).headers["x-cliffguard-version"] for i in range(40)}
        assert seen == {"v1", "v2"}


def test_metrics_count_requests_tokens_and_ttft(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)
    c = client(gw)
    keys = {"alias": "bot", "version": "v1", "arm": "stable"}
    before = {n: scrape(gw.url, n, **keys) for n in
              ("cliffguard_requests_total", "cliffguard_tokens_total", "cliffguard_ttft_seconds_count")}
    c.chat.completions.create(model="bot", messages=[{"role": "user", "content": "x"}])
    list(c.chat.completions.create(model="bot", stream=True, messages=[{"role": "user", "content": "x"}]))
    assert scrape(gw.url, "cliffguard_requests_total", **keys) - before["cliffguard_requests_total"] == 2
    # fake backend: 7 prompt + 5 completion tokens per answer, streamed or not
    assert scrape(gw.url, "cliffguard_tokens_total", **keys) - before["cliffguard_tokens_total"] == 24
    assert scrape(gw.url, "cliffguard_ttft_seconds_count", **keys) - before["cliffguard_ttft_seconds_count"] == 1
    assert scrape(gw.url, "cliffguard_in_flight_requests", alias="bot") == 0
