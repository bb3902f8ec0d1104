import orjson
import pytest

from gateway.errors import GatewayError
from gateway.proxy.request import CHAT, COMPLETIONS, RESPONSES, parse, upstream_body


@pytest.mark.parametrize("raw,code,param", [
    (b"", "invalid_json", None),
    (b"{nope", "invalid_json", None),
    (b"[1,2]", "invalid_json", None),
    (b'{"messages": []}', "missing_required_parameter", "model"),
    (b'{"model": 3, "messages": []}', "invalid_type", "model"),
    (b'{"model": "m", "messages": {}}', "invalid_type", "messages"),
    (b'{"model": "m"}', "missing_required_parameter", "messages"),
    (b'{"model": "m", "messages": [{"content": "x"}]}', "invalid_value", "messages[0]"),
    (b'{"model": "m", "messages": [], "stream": "yes"}', "invalid_type", "stream"),
    (b'{"model": "m", "messages": [], "user": 5}', "invalid_type", "user"),
])
def test_bad_chat_bodies_are_400_naming_the_problem(raw, code, param):
    with pytest.raises(GatewayError) as e:
        parse(raw, CHAT)
    assert e.value.status == 400 and e.value.code == code and e.value.param == param
    assert orjson.loads(e.value.body())["error"]["message"]


def test_completions_need_prompt():
    with pytest.raises(GatewayError):
        parse(b'{"model": "m", "prompt": 1}', COMPLETIONS)
    assert parse(b'{"model": "m", "prompt": ["a", "b"]}', COMPLETIONS).model == "m"


def test_upstream_body_rewrites_model_and_keeps_every_other_field():
    req = parse(b'{"model":"alias","messages":[],"temperature":0.3,"logit_bias":{"5":1},"x_extra":[1]}', CHAT)
    out = orjson.loads(upstream_body(req, "served"))
    assert out == {"model": "served", "messages": [], "temperature": 0.3, "logit_bias": {"5": 1}, "x_extra": [1]}


def test_stream_asks_for_usage_unless_client_did():
    req = parse(b'{"model":"a","messages":[],"stream":true,"stream_options":{"foo":1}}', CHAT)
    assert not req.wants_usage
    assert orjson.loads(upstream_body(req, "s"))["stream_options"] == {"foo": 1, "include_usage": True}
    req2 = parse(b'{"model":"a","messages":[],"stream":true,"stream_options":{"include_usage":true}}', CHAT)
    assert req2.wants_usage


def test_continuous_usage_alone_gets_no_usage_as_with_vllm():
    # vLLM reports usage on every chunk only with include_usage too; the usage the gateway adds must not
    # turn a client's lone continuous_usage_stats into usage on every chunk
    req = parse(b'{"model":"a","messages":[],"stream":true,"stream_options":{"continuous_usage_stats":true}}',
                CHAT)
    assert orjson.loads(upstream_body(req, "s"))["stream_options"] == {"include_usage": True}
    both = b'{"model":"a","messages":[],"stream":true,"stream_options":{"include_usage":true,' \
           b'"continuous_usage_stats":true}}'
    assert orjson.loads(upstream_body(parse(both, CHAT), "s"))["stream_options"] == {
        "include_usage": True, "continuous_usage_stats": True}


@pytest.mark.parametrize("raw,code,param", [
    (b'{"model": "m"}', "missing_required_parameter", "input"),
    (b'{"model": "m", "input": 3}', "invalid_type", "input"),
    (b'{"model": "m", "input": "hi", "instructions": ["x"]}', "invalid_type", "instructions"),
    (b'{"model": "m", "input": "hi", "metadata": "x"}', "invalid_type", "metadata"),
])
def test_bad_responses_bodies_are_400_naming_the_problem(raw, code, param):
    with pytest.raises(GatewayError) as e:
        parse(raw, RESPONSES)
    assert e.value.status == 400 and e.value.code == code and e.value.param == param


def test_responses_request_is_routed_and_classified_as_its_conversation():
    body = {"model": "bot", "instructions": "You are terse.", "user": "u1", "metadata": {"k": "v"}, "stream": True,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]},
                      {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a":2}'},
                      {"type": "function_call_output", "call_id": "c1", "output": "4"},
                      {"type": "message", "role": "user", "content": "and 3+3?"}]}
    req = parse(orjson.dumps(body), RESPONSES)
    assert req.endpoint == RESPONSES and req.stream and req.model == "bot"
    assert req.conversation == {"user": "u1", "metadata": {"k": "v"}, "messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": '[tool call] add({"a":2})'}, {"role": "tool", "content": "4"},
        {"role": "user", "content": "and 3+3?"}]}
    # Responses streams end with usage by themselves: nothing is added to the body
    assert orjson.loads(upstream_body(req, "served")) == {**body, "model": "served"}
    assert parse(b'{"model":"m","input":"hi"}', RESPONSES).conversation["messages"] == [
        {"role": "user", "content": "hi"}]
