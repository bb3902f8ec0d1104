import orjson
import pytest

from gateway.errors import GatewayError
from gateway.proxy.request import CHAT, COMPLETIONS, parse, upstream_body


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
