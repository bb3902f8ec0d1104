"""The clients people use, through the gateway in front of real vLLM (CPU build, tiny models), compared
with the same calls made to vLLM directly: the openai SDK (sync, async, chat, completions, Responses,
streaming), LangChain's ChatOpenAI, the OpenAI Agents SDK with its default (Responses) model, and the
LiteLLM SDK.

The alias `solo` has only the stable version (`base`), so at temperature 0 the gateway's answer must be
the direct answer with `model` naming the alias. The tiny models write random text: they end a turn only
at a stop string or at max tokens, and they call a tool only when the tool choice forces it (vLLM then
constrains the output; see tests/support/vllm.py). Tools use an enum argument so the forced call is short.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no internet: LiteLLM's bundled cost map

import httpx  # noqa: E402
import litellm  # noqa: E402
import openai  # noqa: E402
import pytest  # noqa: E402
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool, set_tracing_disabled  # noqa: E402
from agents.models.openai_provider import OpenAIProvider  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from tests.support.vllm import versions  # noqa: E402

pytestmark = pytest.mark.e2e
set_tracing_disabled(True)  # the Agents SDK would export traces to OpenAI
MSG = [{"role": "user", "content": "Tell me about the sea."}]
STOP = list("onld")  # letters the random text soon writes; none is in a forced call's arguments (Paris/Riga)
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Riga"]}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture
def gw(vllm_pair, gateway_factory):
    aliases = [{"name": "solo", "stable": "base-v1"},
               {"name": "lora-solo", "stable": "ft-lora"},
               {"name": "bot", "stable": "base-v1", "candidate": "perturbed", "weight_pct": 50}]
    return gateway_factory(versions(*vllm_pair), aliases)


def sdk(url: str, cls: Any = openai.OpenAI) -> Any:
    return cls(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def same_but_model(via: Any, direct: Any, ignore: tuple[str, ...] = ()) -> None:
    """Equal apart from the fields that differ between any two calls (ids, times) and `model`."""
    skip = {"id", "created", "created_at", "model", "system_fingerprint", "call_id", "item_id", *ignore}

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k not in skip}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    dump = (lambda o: o.model_dump(mode="json")) if hasattr(via, "model_dump") else (lambda o: o)
    assert clean(dump(via)) == clean(dump(direct))


def responses_stream(events: list[Any]) -> tuple[list[str], str]:
    """What a Responses stream says: its events other than deltas, in order, and the text. (How vLLM cuts
    the text into deltas depends on timing, so two identical generations may differ there.)"""
    return ([e.type for e in events if not e.type.endswith(".delta")],
            "".join(e.delta for e in events if e.type == "response.output_text.delta"))


def chat_stream(chunks: list[Any]) -> dict[str, Any]:
    """What a chat stream says, per choice: the text, the logprobs' tokens, the finish reason; and the usage."""
    out: dict[str, Any] = {"usage": [c.usage.model_dump() if c.usage else None for c in chunks if c.usage]}
    for c in chunks:
        for ch in c.choices:
            slot = out.setdefault(ch.index, {"text": "", "tokens": [], "finish": None})
            slot["text"] += ch.delta.content or ""
            slot["tokens"] += [t.token for t in (ch.logprobs.content or [])] if ch.logprobs else []
            slot["finish"] = ch.finish_reason or slot["finish"]
    return out


# -- the openai SDK --------------------------------------------------------------------------------------

def test_openai_sync_chat_completions_and_responses_match_vllm(gw, vllm_pair):
    base = vllm_pair[0]
    via, direct = sdk(gw.url), sdk(base.url)
    kw: dict[str, Any] = {"messages": MSG, "max_tokens": 12, "temperature": 0}
    chat_gw, chat_direct = via.chat.completions.create(model="solo", **kw), direct.chat.completions.create(
        model="base", **kw)
    assert chat_gw.model == "solo" and chat_direct.model == "base"
    same_but_model(chat_gw, chat_direct)
    comp = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
    same_but_model(via.completions.create(model="solo", **comp), direct.completions.create(model="base", **comp))

    rkw: dict[str, Any] = {"input": "Tell me about the sea.", "instructions": "Be brief.", "max_output_tokens": 12,
                           "temperature": 0, "metadata": {"category": "ours", "model": "base"}}
    r_gw, r_direct = via.responses.create(model="solo", **rkw), direct.responses.create(model="base", **rkw)
    assert r_gw.model == "solo" and r_gw.output_text and r_gw.output_text == r_direct.output_text
    assert r_gw.metadata == {"category": "ours", "model": "base"}  # the client's metadata, as it sent it
    same_but_model(r_gw, r_direct)

    stream_gw = list(via.responses.create(model="solo", stream=True, **rkw))
    stream_direct = list(direct.responses.create(model="base", stream=True, **rkw))
    assert responses_stream(stream_gw) == responses_stream(stream_direct)
    assert stream_gw[-1].type == "response.completed" and stream_gw[-1].response.model == "solo"
    assert {e.response.model for e in stream_gw if hasattr(e, "response")} == {"solo"}
    same_but_model(stream_gw[-1].response, stream_direct[-1].response)


async def test_openai_async_streams_with_usage_n_logprobs_json_and_continuous_usage(gw, vllm_pair):
    base = vllm_pair[0]
    via, direct = sdk(gw.url, openai.AsyncOpenAI), sdk(base.url, openai.AsyncOpenAI)

    async def both(**kw: Any) -> tuple[list[Any], list[Any]]:
        async def collect(c: Any, model: str) -> list[Any]:
            return [ch async for ch in await c.chat.completions.create(model=model, stream=True, **kw)]
        return await asyncio.gather(collect(via, "solo"), collect(direct, "base"))

    kw: dict[str, Any] = {"messages": MSG, "max_tokens": 10, "temperature": 0}
    # n > 1 needs sampling: a seed makes it repeatable
    g, d = await both(stream_options={"include_usage": True}, n=2, logprobs=True, top_logprobs=2,
                      **{**kw, "temperature": 1.0, "seed": 7})
    assert {ch.model for ch in g} == {"solo"} and chat_stream(g) == chat_stream(d)
    assert g[-1].usage.completion_tokens == 20  # n=2 choices of 10 tokens, as vLLM reports it
    assert len(chat_stream(g)[1]["tokens"]) == 10

    g, d = await both(stream_options={"continuous_usage_stats": True}, **kw)  # without include_usage
    assert chat_stream(g) == chat_stream(d) and all(ch.usage is None for ch in g + d)
    g, d = await both(stream_options={"include_usage": True, "continuous_usage_stats": True}, **kw)
    assert all(ch.usage for ch in g + d) and g[-1].usage == d[-1].usage  # usage on every chunk, in both

    json_kw: dict[str, Any] = {**kw, "response_format": {"type": "json_object"}, "max_tokens": 24}
    j_gw, j_direct = await asyncio.gather(via.chat.completions.create(model="solo", **json_kw),
                                          direct.chat.completions.create(model="base", **json_kw))
    same_but_model(j_gw, j_direct)
    tools_kw: dict[str, Any] = {**kw, "tools": [WEATHER], "max_tokens": 40,
                                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    t_gw, t_direct = await asyncio.gather(via.chat.completions.create(model="solo", **tools_kw),
                                          direct.chat.completions.create(model="base", **tools_kw))
    call = t_gw.choices[0].message.tool_calls[0].function
    assert call.name == "get_weather" and call.arguments in ('{"city":"Paris"}', '{"city":"Riga"}')
    same_but_model(t_gw, t_direct, ignore=("tool_calls",))
    assert t_direct.choices[0].message.tool_calls[0].function == call
    await asyncio.gather(via.close(), direct.close())


def test_models_and_vllm_extra_endpoints_match_vllm(gw, vllm_pair):
    base = vllm_pair[0]
    direct_models = {m["id"]: m for m in httpx.get(f"{base.url}/v1/models", timeout=10).json()["data"]}
    models = {m["id"]: m for m in httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]}
    for alias, served in (("solo", "base"), ("lora-solo", "ft")):
        assert {k: v for k, v in models[alias].items() if k not in ("id", "created", "permission")} == {
            k: v for k, v in direct_models[served].items() if k not in ("id", "created", "permission")}
    assert models["solo"]["max_model_len"] == 2048 and models["lora-solo"]["parent"] == "base"
    h = httpx.Client(timeout=10)
    tok = {"prompt": "hello world"}
    assert h.post(f"{gw.url}/tokenize", json={"model": "bot", **tok}).json() == h.post(
        f"{base.url}/tokenize", json={"model": "base", **tok}).json()
    ids = {"tokens": [282, 78, 360]}
    assert h.post(f"{gw.url}/detokenize", json={"model": "bot", **ids}).json() == h.post(
        f"{base.url}/detokenize", json={"model": "base", **ids}).json()
    assert h.get(f"{gw.url}/version?model=bot").json() == h.get(f"{base.url}/version").json()


# -- LangChain, the OpenAI Agents SDK, LiteLLM ------------------------------------------------------------

@tool
def get_weather(city: Literal["Paris", "Riga"]) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_langchain_chat_openai_invoke_stream_tools_and_responses(gw, vllm_pair):
    def llm(url: str, model: str, **kw: Any) -> ChatOpenAI:
        return ChatOpenAI(model=model, base_url=f"{url}/v1", api_key="x", temperature=0, max_tokens=12,
                          max_retries=0, **kw)
    via, direct = llm(gw.url, "solo"), llm(vllm_pair[0].url, "base")
    m_gw, m_direct = via.invoke("Tell me about the sea."), direct.invoke("Tell me about the sea.")
    assert m_gw.content and m_gw.content == m_direct.content and m_gw.usage_metadata == m_direct.usage_metadata
    assert m_gw.response_metadata["model_name"] == "solo"  # per-model attribution names the alias
    s_gw = list(llm(gw.url, "solo", stream_usage=True).stream("Tell me about the sea."))
    s_direct = list(llm(vllm_pair[0].url, "base", stream_usage=True).stream("Tell me about the sea."))
    assert "".join(c.content for c in s_gw) == "".join(c.content for c in s_direct)  # cut by vLLM's timing
    assert sum(s_gw[1:], s_gw[0]).usage_metadata == sum(s_direct[1:], s_direct[0]).usage_metadata
    bound = {"tool_choice": "get_weather", "strict": True}
    t_gw = via.bind_tools([get_weather], **bound).invoke("Weather in Paris?")
    t_direct = direct.bind_tools([get_weather], **bound).invoke("Weather in Paris?")
    assert t_gw.tool_calls[0]["name"] == "get_weather" and t_gw.tool_calls[0]["args"] in (
        {"city": "Paris"}, {"city": "Riga"})
    assert [(c["name"], c["args"]) for c in t_gw.tool_calls] == [(c["name"], c["args"]) for c in t_direct.tool_calls]
    r_gw = llm(gw.url, "solo", use_responses_api=True).invoke("Tell me about the sea.")
    r_direct = llm(vllm_pair[0].url, "base", use_responses_api=True).invoke("Tell me about the sea.")
    assert r_gw.text and r_gw.text == r_direct.text and r_gw.response_metadata["model_name"] == "solo"


@function_tool
def agent_weather(city: Literal["Paris", "Riga"]) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_openai_agents_sdk_default_responses_model(gw, vllm_pair):
    async def run(url: str, model: str, streamed: bool = False) -> list[Any]:
        async with sdk(url, openai.AsyncOpenAI) as client:
            return await run_with(RunConfig(model_provider=OpenAIProvider(openai_client=client)), model, streamed)

    async def run_with(config: RunConfig, model: str, streamed: bool) -> list[Any]:
        settings = ModelSettings(temperature=0, max_tokens=48, extra_body={"stop": STOP})
        plain = Agent(name="plain", instructions="Answer briefly.", model=model, model_settings=settings)
        # the forced call, the tool's output, then a free answer (the SDK resets the tool choice after use)
        tooled = Agent(name="tooled", instructions="Use the tool.", model=model, tools=[agent_weather],
                       model_settings=settings.resolve(ModelSettings(tool_choice="agent_weather")))
        if streamed:  # (the raw events follow vLLM's timing-dependent deltas)
            r = Runner.run_streamed(plain, "Tell me about the sea.", run_config=config)
            events = [e.type async for e in r.stream_events() if e.type != "raw_response_event"]
            return [events, r.final_output]
        first = await Runner.run(plain, "Tell me about the sea.", run_config=config)
        second = await Runner.run(tooled, "Weather in Paris?", run_config=config, max_turns=3)
        return [first.final_output, [i.type for i in second.new_items], second.final_output,
                [getattr(i, "output", None) for i in second.new_items]]

    via, direct = await run(gw.url, "solo"), await run(vllm_pair[0].url, "base")
    assert via == direct
    assert via[1] == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert via[3][1] in ("sunny in Paris", "sunny in Riga")
    assert await run(gw.url, "solo", streamed=True) == await run(vllm_pair[0].url, "base", streamed=True)


def test_litellm_sdk_completion_streaming_and_responses(gw, vllm_pair):
    def call(url: str, model: str, **kw: Any) -> Any:
        return litellm.completion(model=f"openai/{model}", api_base=f"{url}/v1", api_key="x", messages=MSG,
                                  max_tokens=8, temperature=0, **kw)
    base = vllm_pair[0]
    c_gw, c_direct = call(gw.url, "solo"), call(base.url, "base")
    assert c_gw.model == "solo" and c_gw.choices[0].message.content == c_direct.choices[0].message.content
    assert c_gw.usage.completion_tokens == c_direct.usage.completion_tokens == 8
    s_gw = list(call(gw.url, "solo", stream=True, stream_options={"include_usage": True}))
    s_direct = list(call(base.url, "base", stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in s_gw if c.choices) == "".join(
        c.choices[0].delta.content or "" for c in s_direct if c.choices)
    assert s_gw[-1].usage.completion_tokens == 8 and {c.model for c in s_gw} == {"solo"}
    kw: dict[str, Any] = {"input": "Tell me about the sea.", "max_output_tokens": 8, "temperature": 0, "api_key": "x"}
    r_gw = litellm.responses(model="openai/solo", api_base=f"{gw.url}/v1", **kw)
    r_direct = litellm.responses(model="openai/base", api_base=f"{base.url}/v1", **kw)
    assert r_gw.model == "solo" and r_gw.output[0].content[0].text == r_direct.output[0].content[0].text
