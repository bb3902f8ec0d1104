"""The gateway in front of real vLLM (CPU build, tiny models), driven by the official openai client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.vllm import versions

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture
def gw(vllm_pair, gateway_factory):
    aliases = [{"name": "bot", "stable": "base-v1", "candidate": "perturbed", "weight_pct": 50},
               {"name": "lora-bot", "stable": "base-v1", "candidate": "ft-lora", "weight_pct": 100}]
    return gateway_factory(versions(*vllm_pair), aliases)


def vllm_direct(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def test_chat_and_completions_with_usage_matching_vllm(gw, vllm_pair):
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    for user in ("alice", "bob", "carol", "dave"):
        raw = c.chat.completions.with_raw_response.create(model="bot", messages=MSG, max_tokens=12,
                                                          temperature=0, user=user)
        via_gw = raw.parse()
        version = raw.headers["x-cliffguard-version"]
        server = vllm_pair[0] if version == "base-v1" else vllm_pair[1]
        direct = vllm_direct(server.url).chat.completions.create(model=server.served_name, messages=MSG,
                                                                 max_tokens=12, temperature=0)
        assert via_gw.choices[0].message.content == direct.choices[0].message.content
        assert via_gw.usage.model_dump() == direct.usage.model_dump()
        assert via_gw.model == "bot" and direct.model == server.served_name  # the alias, whichever answered

    comp = c.completions.create(model="bot", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert comp.usage.completion_tokens == 8 and comp.choices[0].text


def test_streaming_chat_and_completions(gw, vllm_pair):
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    chunks = list(c.chat.completions.create(model="bot", messages=MSG, max_tokens=16, temperature=0, stream=True,
                                            user="stream-user"))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text and all(ch.usage is None for ch in chunks)  # the usage chunk we added is not forwarded
    with_usage = list(c.completions.create(model="bot", prompt="Hello", max_tokens=8, temperature=0, stream=True,
                                           stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == 8
    # the gateway counted the stream's tokens from the usage chunk it asked for
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert "cliffguard_tokens_total" in metrics and "cliffguard_ttft_seconds_bucket" in metrics


def test_lora_adapter_routing(gw, vllm_pair):
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    raw = c.chat.completions.with_raw_response.create(model="lora-bot", messages=MSG, max_tokens=8, temperature=0)
    assert raw.headers["x-cliffguard-version"] == "ft-lora" and raw.parse().model == "lora-bot"
    direct = vllm_direct(vllm_pair[0].url).chat.completions.create(model="ft", messages=MSG, max_tokens=8,
                                                                   temperature=0)
    assert raw.parse().choices[0].message.content == direct.choices[0].message.content


def test_unknown_model_is_openai_404(gw):
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="no-such-alias", messages=MSG)
    assert e.value.body["code"] == "model_not_found"


def test_readyz_sees_vllm_backends(gw):
    r = httpx.get(f"{gw.url}/readyz", headers={"authorization": "Bearer read-secret"}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ready"
    assert body["aliases"]["lora-bot"]["candidate"]["ok"] and body["aliases"]["bot"]["candidate"]["ok"]
