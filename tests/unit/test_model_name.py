import orjson

from gateway.proxy.model_name import ModelRewrite


def test_body_rewrites_the_answers_model_only():
    body = orjson.dumps({"id": "x", "model": "base", "choices": [{"message": {
        "content": 'I said {"model":"base"} and "model": "base"', "tool_calls": [
            {"function": {"name": "f", "arguments": '{"model":"base"}'}}]}}]})
    out = orjson.loads(ModelRewrite("base", "bot").body(body))
    assert out["model"] == "bot"
    msg = out["choices"][0]["message"]
    assert msg["content"] == 'I said {"model":"base"} and "model": "base"'  # text the model wrote is its own
    assert msg["tool_calls"][0]["function"]["arguments"] == '{"model":"base"}'


def test_other_models_pretty_printed_json_and_names_that_need_escaping():
    assert ModelRewrite("base", "bot").body(b'{"model": "base-2"}') == b'{"model": "base-2"}'
    assert orjson.loads(ModelRewrite("base", "bot").body(b'{\n  "model" : "base",\n  "x": 1\n}')) == {
        "model": "bot", "x": 1}
    odd = 'team/"quoted"\\model'
    out = ModelRewrite(odd, 'alias "A"').body(orjson.dumps({"model": odd}))
    assert orjson.loads(out) == {"model": 'alias "A"'}


def test_nothing_to_do_when_the_backend_serves_the_alias_name():
    assert ModelRewrite.for_request("bot", "bot", {}) is None
    assert not ModelRewrite.for_request("ft", "bot", {"metadata": {"model": "other"}}).exact


def test_metadata_holding_the_served_name_is_echoed_untouched():
    # the Responses API echoes metadata before the answer's own model: such requests are rewritten by parsing
    rw = ModelRewrite.for_request("ft", "bot", {"metadata": {"model": "ft"}})
    assert rw is not None and rw.exact
    body = orjson.dumps({"id": "r", "metadata": {"model": "ft"}, "model": "ft", "output": []})
    assert orjson.loads(rw.body(body)) == {"id": "r", "metadata": {"model": "ft"}, "model": "bot", "output": []}
    event = {"type": "response.created", "response": {"metadata": {"model": "ft"}, "model": "ft"}}
    sse = b"event: response.created\ndata: " + orjson.dumps(event) + b"\n\n"
    out = rw.events(sse + sse)
    assert out.startswith(b"event: response.created\ndata: ") and out.count(b"\n\n") == 2
    for line in out.splitlines():
        if line.startswith(b"data: "):
            assert orjson.loads(line[6:])["response"] == {"metadata": {"model": "ft"}, "model": "bot"}


def test_events_rewrite_the_first_occurrence_in_each_event():
    nested = b'data: {"model":"ft","x":{"model":"ft"}}\n\n'
    plain = b'data: {"model":"ft","choices":[]}\r\n\r\n'
    out = ModelRewrite("ft", "bot").events(nested + plain + nested)
    assert out == (b'data: {"model":"bot","x":{"model":"ft"}}\n\n' + plain.replace(b'"ft"', b'"bot"')
                   + b'data: {"model":"bot","x":{"model":"ft"}}\n\n')
    lf_only = ModelRewrite("ft", "bot").events(nested + nested)  # the bytes.split path (no CR in the read)
    assert lf_only == b'data: {"model":"bot","x":{"model":"ft"}}\n\n' * 2
