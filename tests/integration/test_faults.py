"""Scripted backend failures: fallback to stable before the first byte, clean errors after it, no hangs,
and cancelled upstream requests when the client leaves."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest
import redis as redis_sync

from monitoring import guards
from tests.support.metrics import scrape
from tests.support.servers import free_port

MSG = [{"role": "user", "content": "x"}]


def setup(backend_factory, gateway_factory, cand_url=None, stable_url=None, timeouts=None, **cand_script):
    stable, s_srv = backend_factory("stable", model="base")
    cand = None
    if cand_url is None:
        cand, c_srv = backend_factory("cand", model="ft", **cand_script)
        cand_url = c_srv.url
    versions = [{"name": "v1", "base_url": f"{stable_url or s_srv.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{cand_url}/v1", "model": "ft"}]
    aliases = [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 100}]
    extra = {"timeouts": timeouts} if timeouts else {}
    gw = gateway_factory(versions, aliases, **extra)
    return stable, cand, gw


def fallbacks(gw, reason):
    return scrape(gw.url, "cliffguard_fallbacks_total", alias="bot", from_version="v2", reason=reason)


@pytest.mark.parametrize("stream", [False, True])
def test_candidate_connection_refused_falls_back_to_stable(backend_factory, gateway_factory, stream):
    closed = f"http://127.0.0.1:{free_port()}"
    stable, _, gw = setup(backend_factory, gateway_factory, cand_url=closed)
    before = fallbacks(gw, "connect")
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": MSG, "stream": stream})
    assert r.status_code == 200 and r.headers["x-cliffguard-version"] == "v1"
    assert r.headers["x-cliffguard-arm"] == "stable" and stable.record.requests
    assert fallbacks(gw, "connect") - before == 1


def test_candidate_500_before_first_byte_falls_back(backend_factory, gateway_factory):
    stable, cand, gw = setup(backend_factory, gateway_factory, status=500)
    before = fallbacks(gw, "http_5xx")
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    chunks = list(c.chat.completions.create(model="bot", messages=MSG, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).startswith("hello")
    assert len(cand.record.requests) == 1 and len(stable.record.requests) == 1
    assert fallbacks(gw, "http_5xx") - before == 1


@pytest.mark.parametrize("stream", [False, True])
def test_candidate_404_for_its_model_falls_back_and_counts_as_its_error(backend_factory, gateway_factory,
                                                                        redis_srv, key_prefix, stream):
    # the candidate's LoRA adapter vanished after a vLLM restart: vLLM answers 404 "model does not exist"
    stable, cand, gw = setup(backend_factory, gateway_factory)
    cand.script.model = "ft-reloaded"
    before = fallbacks(gw, "http_4xx")
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": MSG, "stream": stream})
    assert r.status_code == 200 and r.headers["x-cliffguard-version"] == "v1" and "hello" in r.text
    assert len(cand.record.requests) == 1 and len(stable.record.requests) == 1
    assert fallbacks(gw, "http_4xx") - before == 1
    assert guard_errors(redis_srv, key_prefix, "v2") == 1


def test_a_request_both_versions_refuse_is_not_the_candidates_error(backend_factory, gateway_factory,
                                                                   redis_srv, key_prefix):
    stable, cand, gw = setup(backend_factory, gateway_factory, status=400)
    stable.script.status = 400  # e.g. a parameter neither version accepts: the client's fault
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": MSG})
    assert r.status_code == 400 and r.headers["x-cliffguard-version"] == "v1"  # stable's answer, verbatim
    assert guard_errors(redis_srv, key_prefix, "v2") == 0


def guard_errors(redis_srv, prefix: str, version: str) -> int:
    """The candidate errors the guards will compare, once the gateway has flushed its counters."""
    raw = redis_sync.Redis.from_url(redis_srv.url)
    rollout = json.loads(raw.hget(f"{prefix}:aliases", "bot"))["rollout_id"]
    time.sleep(1.3)  # counters are flushed every second, in the background
    return int(raw.hget(guards.key(prefix, "bot", rollout), f"{version}:errors") or 0)


def test_candidate_timeout_before_first_byte_falls_back(backend_factory, gateway_factory):
    stable, cand, gw = setup(backend_factory, gateway_factory, timeouts={"read": 0.5}, head_delay_s=3)
    before = fallbacks(gw, "timeout")
    t = time.monotonic()
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": MSG}, timeout=10)
    assert r.status_code == 200 and r.headers["x-cliffguard-version"] == "v1"
    assert time.monotonic() - t < 2.5
    assert fallbacks(gw, "timeout") - before == 1


def test_stable_down_is_502_and_stable_timeout_504(backend_factory, gateway_factory):
    closed = f"http://127.0.0.1:{free_port()}"
    _, _, gw = setup(backend_factory, gateway_factory, cand_url=closed, stable_url=closed)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": MSG})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_connect"
    assert r.headers["x-cliffguard-version"] == "v1"  # fell back, then stable failed too

    slow, s_srv = backend_factory("slow", model="base", head_delay_s=3)
    gw2 = gateway_factory([{"name": "v1", "base_url": f"{s_srv.url}/v1", "model": "base"}],
                          [{"name": "solo", "stable": "v1"}], timeouts={"read": 0.5}, prefix="solo-504")
    r = httpx.post(f"{gw2.url}/v1/chat/completions", json={"model": "solo", "messages": MSG}, timeout=10)
    assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_error"


def test_failure_mid_stream_ends_with_error_event_not_a_hang(backend_factory, gateway_factory):
    _, cand, gw = setup(backend_factory, gateway_factory, fail_after_chunks=2)
    before = scrape(gw.url, "cliffguard_upstream_errors_total", alias="bot", version="v2", reason="midstream")
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=10,
                      json={"model": "bot", "messages": MSG, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["x-cliffguard-version"] == "v2"  # no fallback after a byte
        body = r.read().decode()
    assert body.count('"content":"') >= 2  # what arrived before the failure was relayed
    assert '"code":"upstream_failed"' in body and body.rstrip().endswith("data: [DONE]")
    after = scrape(gw.url, "cliffguard_upstream_errors_total", alias="bot", version="v2", reason="midstream")
    assert after - before == 1


def test_slow_stream_is_relayed_chunk_by_chunk(backend_factory, gateway_factory):
    _, _, gw = setup(backend_factory, gateway_factory, chunk_delay_s=0.3, chunks=4)
    arrivals = []
    t0 = time.monotonic()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=10,
                      json={"model": "bot", "messages": MSG, "stream": True}) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 4
    assert arrivals[0] < 0.6, arrivals  # the first token is not held back until the end
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(g > 0.15 for g in gaps), gaps


def test_client_disconnect_cancels_upstream(backend_factory, gateway_factory):
    _, cand, gw = setup(backend_factory, gateway_factory, chunk_delay_s=0.5, chunks=20)
    before = scrape(gw.url, "cliffguard_client_disconnects_total", alias="bot", version="v2")
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=10,
                      json={"model": "bot", "messages": MSG, "stream": True}) as r:
        for line in r.iter_lines():
            if '"content":"hello' in line:
                break  # leave mid-stream
    deadline = time.monotonic() + 5
    while cand.record.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cand.record.cancelled == 1 and cand.record.completed == 0
    assert scrape(gw.url, "cliffguard_client_disconnects_total", alias="bot", version="v2") - before == 1
    assert scrape(gw.url, "cliffguard_in_flight_requests", alias="bot") == 0


def test_client_disconnect_while_waiting_for_the_head(backend_factory, gateway_factory):
    _, cand, gw = setup(backend_factory, gateway_factory, head_delay_s=1.0)
    before = scrape(gw.url, "cliffguard_client_disconnects_total", alias="bot", version="v2")
    body = b'{"model": "bot", "messages": []}'
    with socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)
    time.sleep(1.5)
    ok = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": MSG}, timeout=10)
    assert ok.status_code == 200  # the worker is fine
    assert scrape(gw.url, "cliffguard_client_disconnects_total", alias="bot", version="v2") - before == 1
    assert scrape(gw.url, "cliffguard_in_flight_requests", alias="bot") == 0


def test_many_concurrent_streams_with_faults_leave_nothing_in_flight(backend_factory, gateway_factory):
    _, _, gw = setup(backend_factory, gateway_factory, fail_after_chunks=1)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=10,
                              json={"model": "bot", "messages": MSG, "stream": True}) as r:
                r.read()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert scrape(gw.url, "cliffguard_in_flight_requests", alias="bot") == 0
