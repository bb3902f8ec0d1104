"""Protocol compatibility over real HTTP, against scripted backends (the shapes of vLLM 0.32): the Responses
API proxied like chat, answers naming the alias, the client's own metadata left alone, vLLM's pass-through
endpoints, the model list's fields and the body limit. tests/e2e/test_clients.py runs real clients against
real vLLM."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.integration.test_judges import Rig
from tests.integration.test_proxy import client, two_versions
from tests.support.metrics import scrape

TOOLS = [{"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}]


COUNTED = {
    "requests": {"name": "cliffguard_requests_total", "alias": "bot", "endpoint": "responses", "status": "200"},
    "completion_tokens": {"name": "cliffguard_tokens_total", "alias": "bot", "version": "v2", "kind": "completion"},
    "ttfts": {"name": "cliffguard_ttft_seconds_count", "alias": "bot", "version": "v2"},
}


def test_responses_plain_and_streamed_with_the_alias_as_model(backend_factory, gateway_factory):
    stable, cand, versions, aliases = two_versions(backend_factory, weight_pct=100)
    gw = gateway_factory(versions, aliases)
    c = client(gw)
    # metrics are per process (every test's gateway runs in this one): compare before and after
    before = {k: scrape(gw.url, **kw) for k, kw in COUNTED.items()}
    raw = c.responses.with_raw_response.create(model="bot", input="Say hi", instructions="Be brief.",
                                               max_output_tokens=16, metadata={"model": "ft", "team": "a"})
    resp = raw.parse()
    assert raw.headers["x-cliffguard-version"] == "v2" and raw.headers["x-cliffguard-arm"] == "candidate"
    assert resp.model == "bot" and resp.output_text.startswith("hello")
    assert resp.metadata == {"model": "ft", "team": "a"}  # the client's metadata is echoed as it sent it
    sent = cand.record.requests[-1]
    assert sent["model"] == "ft" and sent["input"] == "Say hi" and "stream_options" not in sent

    events = list(c.responses.create(model="bot", input=[{"role": "user", "content": "Say hi"}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert {e.response.model for e in events if hasattr(e, "response")} == {"bot"}
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta").startswith("hello")
    assert events[-1].response.usage.output_tokens == 5
    # counted like chat: tokens from the terminal event's usage, TTFT from the first delta
    after = {k: scrape(gw.url, **kw) for k, kw in COUNTED.items()}
    assert {k: after[k] - before[k] for k in COUNTED} == {"requests": 2, "completion_tokens": 10, "ttfts": 1}


def test_responses_tool_calls_fallback_and_mid_stream_failure(backend_factory, gateway_factory):
    stable, cand, versions, aliases = two_versions(backend_factory, weight_pct=100, status=500)
    stable.script.tool_call = ("get_weather", '{"city": "Oslo"}')
    gw = gateway_factory(versions, aliases)
    c = client(gw)
    raw = c.responses.with_raw_response.create(model="bot", input="Weather in Oslo?", tools=TOOLS)
    call = raw.parse().output[0]
    assert raw.headers["x-cliffguard-version"] == "v1"  # the candidate's 500 fell back to stable
    assert (call.type, call.name, call.arguments) == ("function_call", "get_weather", '{"city": "Oslo"}')
    streamed = list(c.responses.create(model="bot", input="Weather in Oslo?", tools=TOOLS, stream=True))
    args = "".join(e.delta for e in streamed if e.type == "response.function_call_arguments.delta")
    assert args == '{"city": "Oslo"}' and streamed[-1].type == "response.completed"

    stable.script.tool_call = None
    stable.script.fail_after_chunks = 2
    events = list(c.responses.create(model="bot", input="Say hi", stream=True))
    assert [e.type for e in events[-3:]] == ["response.output_text.delta"] * 2 + ["error"]
    err = events[-1]
    assert err.code == "upstream_failed" and "Backend stream failed" in err.message
    assert err.sequence_number == events[-2].sequence_number + 1


def test_responses_are_sticky_and_classified_by_their_conversation(backend_factory, gateway_factory):
    stable, cand, versions, aliases = two_versions(backend_factory, weight_pct=50)
    tax = {"categories": [{"name": "support", "rules": [{"pattern": "ACME help desk", "scope": "system"}]}]}
    gw = gateway_factory(versions, aliases, classifier={"taxonomy": tax})
    h = httpx.Client(base_url=gw.url, timeout=20)
    arms = {}
    for i in range(12):  # the same first user message keeps its arm as the conversation grows
        first = {"role": "user", "content": [{"type": "input_text", "text": f"conversation {i} starts here"}]}
        seen = set()
        for turns in ([first], [first, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]):
            r = h.post("/v1/responses", json={"model": "bot", "input": turns})
            assert r.status_code == 200
            seen.add(r.headers["x-cliffguard-arm"])
        assert len(seen) == 1
        arms[i] = seen.pop()
    assert set(arms.values()) == {"stable", "candidate"}  # and different conversations do split

    before = scrape(gw.url, "cliffguard_classifications_total", category="support", layer="rule")
    assert h.post("/v1/responses", json={"model": "bot", "input": "hi",
                                         "instructions": "You are the ACME help desk."}).status_code == 200
    assert scrape(gw.url, "cliffguard_classifications_total", category="support", layer="rule") - before == 1
    r = h.post("/v1/responses", json={"model": "bot", "input": "hi", "metadata": {"cliffguard_category": "cooking"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata.cliffguard_category"
    assert h.post("/v1/responses", json={"model": "bot"}).json()["error"]["param"] == "input"


def test_chat_answers_name_the_alias_and_metadata_is_the_clients(backend_factory, gateway_factory):
    stable, cand, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)
    c = client(gw)
    msgs = [{"role": "user", "content": "hi"}]
    before = scrape(gw.url, "cliffguard_requests_total", alias="bot", version="v1", endpoint="chat")
    chat = c.chat.completions.create(model="bot", messages=msgs, metadata={"category": "billing-v2"})
    assert chat.model == "bot"
    assert stable.record.requests[-1]["metadata"] == {"category": "billing-v2"}  # untouched, not refused
    chunks = list(c.chat.completions.create(model="bot", messages=msgs, stream=True))
    assert chunks and {ch.model for ch in chunks} == {"bot"}
    assert c.completions.create(model="bot", prompt="x").model == "bot"
    assert scrape(gw.url, "cliffguard_requests_total", alias="bot", version="v1", endpoint="chat") - before == 2


def test_models_carry_the_stable_backends_fields(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory)
    versions.append({"name": "gone", "base_url": "http://127.0.0.1:9/v1", "model": "x"})
    gw = gateway_factory(versions, [*aliases, {"name": "orphan", "stable": "gone"}])
    models = {m["id"]: m for m in httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]}
    assert models["bot"] == {"id": "bot", "object": "model", "created": 1700000000, "owned_by": "vllm",
                             "root": "/models/base", "parent": None, "max_model_len": 4096}
    assert models["orphan"]["owned_by"] == "cliffguard" and "max_model_len" not in models["orphan"]  # unreachable


def test_embeddings_tokenize_detokenize_version_go_to_stable(backend_factory, gateway_factory):
    stable, cand, versions, aliases = two_versions(backend_factory, weight_pct=100)
    gw = gateway_factory(versions, aliases)
    before = scrape(gw.url, "cliffguard_requests_total", alias="bot", endpoint="tokenize", status="200")
    raw = client(gw).embeddings.with_raw_response.create(model="bot", input=["a", "bb"])
    emb = raw.parse()
    assert raw.headers["x-cliffguard-version"] == "v1" and emb.model == "bot" and len(emb.data) == 2
    assert stable.record.requests[-1] == {"model": "base", "input": ["a", "bb"], "encoding_format": "base64"}
    h = httpx.Client(base_url=gw.url, timeout=10)
    tok = h.post("/tokenize", json={"model": "bot", "prompt": "hi"})
    assert tok.status_code == 200 and tok.json()["tokens"] == [104, 105]
    assert h.post("/detokenize", json={"model": "bot", "tokens": [104, 105]}).json() == {"prompt": "hi"}
    assert h.post("/tokenize", json={"prompt": "hi"}).json()["count"] == 2  # one alias: `model` may be left out
    assert h.get("/version").json() == {"version": "fake-stable"}
    assert cand.record.requests == []  # nothing went to the candidate, nothing was judged
    assert h.post("/tokenize", json={"model": "nope", "prompt": "x"}).json()["error"]["code"] == "model_not_found"
    assert h.get("/version?model=bot").status_code == 200
    assert scrape(gw.url, "cliffguard_requests_total", alias="bot", endpoint="tokenize", status="200") - before == 2


def test_version_needs_a_model_when_there_are_several(backend_factory, gateway_factory):
    _, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, [*aliases, {"name": "other", "stable": "v2"}])
    h = httpx.Client(base_url=gw.url, timeout=10)
    r = h.get("/version")
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert h.get("/version?model=other").json() == {"version": "fake-cand"}
    r = h.post("/version")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"  # no POST


def test_default_body_limit_takes_an_image_request(backend_factory, gateway_factory):
    stable, _, versions, aliases = two_versions(backend_factory)
    gw = gateway_factory(versions, aliases)  # default limits
    image = base64.b64encode(bytes(9 * 1024 * 1024)).decode()  # a 9 MiB image, 12 MiB as a data URL
    content = [{"type": "text", "text": "What is in this picture?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]
    chat = client(gw).chat.completions.create(model="bot", messages=[{"role": "user", "content": content}])
    assert chat.choices[0].message.content
    assert stable.record.requests[-1]["messages"][0]["content"][1]["image_url"]["url"].endswith(image[-20:])


@pytest.fixture
def rig(backend_factory, gateway_factory, redis_srv, key_prefix):
    made: list[Rig] = []

    def make(**kw) -> Rig:
        r = Rig(backend_factory, gateway_factory, redis_srv.url, key_prefix, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


async def test_responses_are_judged_with_the_paired_answer_from_the_same_endpoint(rig):
    r = rig(weight=0.0)  # shadow: the candidate's answer is generated by the worker
    r.cand.script.tool_call = ("get_weather", '{"city": "Oslo"}')
    with httpx.Client(base_url=r.gw.url, timeout=20) as h:
        for i in range(4):
            body = {"model": "bot", "input": [{"role": "user", "content": f"Weather in Oslo? (#{i}) me@x.org"}],
                    "instructions": "Answer as the forecaster.", "temperature": 0.3, "max_output_tokens": 20,
                    "tools": TOOLS, "stream": i % 2 == 1}
            resp = h.post("/v1/responses", json=body, headers={"x-cliffguard-category": "knowledge"})
            assert resp.status_code == 200
        chained = h.post("/v1/responses", json={**body, "previous_response_id": "resp_x"},
                         headers={"x-cliffguard-category": "knowledge"})
        assert chained.status_code == 200  # answered, never sampled: the other version cannot see resp_x
    await r.work_until(lambda w: w.stats.judged >= 4)
    regenerated = [b for b in r.cand.record.requests]
    assert len(regenerated) == 4
    for b in regenerated:
        assert b["model"] == "ft" and b["stream"] is False and b["store"] is False
        assert b["instructions"] == "Answer as the forecaster." and b["tools"] == TOOLS
        assert b["temperature"] == 0.3 and b["max_output_tokens"] == 20
        assert b["input"][0]["content"].endswith("[REDACTED]")  # what was stored is what was redacted
    user = r.judge.calls[0][1]["content"]
    assert "system: Answer as the forecaster." in user and "user: Weather in Oslo?" in user
    assert '[tool call] get_weather({"city": "Oslo"})' in user and "the stable version answers" in user
    client_, q, _ = r.state()
    rollout = json.loads(await client_.hget(f"{r.prefix}:aliases", "bot"))["rollout_id"]
    stats = await q.stats("bot", rollout)
    await client_.aclose()
    assert stats["knowledge"]["n"] == 4
