"""Parsing and checking an OpenAI request body: pure, no I/O.

The gateway only checks the fields it reads itself (model, stream, stream_options, messages/prompt/input,
instructions, user, metadata); every other field is passed to the backend untouched, which validates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import bad_request
from router.classify.prompt import responses_messages

CHAT = "chat"
COMPLETIONS = "completions"
RESPONSES = "responses"


@dataclass(slots=True)
class OpenAIRequest:
    endpoint: str
    body: dict[str, Any]
    model: str
    stream: bool
    wants_usage: bool  # the client asked for stream_options.include_usage itself
    # what routing and classification read: the body itself, or for the Responses API its `instructions`
    # and `input` as chat messages (so stickiness and categories work the same on every endpoint)
    conversation: Mapping[str, Any]


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _expect(body: dict[str, Any], field: str, types: tuple[type, ...], what: str) -> Any:
    v = body.get(field)
    if v is not None and (not isinstance(v, types) or (bool not in types and isinstance(v, bool))):
        raise bad_request(f"Invalid type for '{field}': expected {what}, got {_type_name(v)}.", field,
                          "invalid_type")
    return v


def _required(body: dict[str, Any], field: str) -> Any:
    v = body.get(field)
    if v is None:
        raise bad_request(f"Missing required parameter: '{field}'.", field, "missing_required_parameter")
    return v


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw:
        raise bad_request("Request body is empty; expected a JSON object.", None, "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"Request body is not valid JSON: {e}.", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"Request body must be a JSON object, got {_type_name(body)}.", None, "invalid_json")
    return body


def model_name(body: dict[str, Any], required: bool = True) -> str | None:
    model = body.get("model")
    if model is None or model == "":
        if not required:
            return None
        raise bad_request("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise bad_request(f"Invalid type for 'model': expected string, got {_type_name(model)}.", "model",
                          "invalid_type")
    return model


def parse(raw: bytes, endpoint: str) -> OpenAIRequest:
    body = json_object(raw)
    model = model_name(body)
    assert model is not None
    stream = bool(_expect(body, "stream", (bool,), "boolean"))
    opts = _expect(body, "stream_options", (dict,), "object")
    _expect(body, "user", (str,), "string")
    _expect(body, "metadata", (dict,), "object")
    conversation: Mapping[str, Any] = body

    if endpoint == CHAT:
        messages = _required(body, "messages")
        if not isinstance(messages, list):
            raise bad_request(f"Invalid type for 'messages': expected array, got {_type_name(messages)}.",
                              "messages", "invalid_type")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise bad_request(f"Invalid value for 'messages[{i}]': expected an object with a string "
                                  "'role'.", f"messages[{i}]", "invalid_value")
    elif endpoint == RESPONSES:
        inp = _required(body, "input")
        if not isinstance(inp, str | list):
            raise bad_request(f"Invalid type for 'input': expected string or array, got {_type_name(inp)}.",
                              "input", "invalid_type")
        _expect(body, "instructions", (str,), "string")
        conversation = {"messages": responses_messages(body), "user": body.get("user"),
                        "metadata": body.get("metadata")}
    else:
        prompt = _required(body, "prompt")
        if not isinstance(prompt, str | list):
            raise bad_request(f"Invalid type for 'prompt': expected string or array, got {_type_name(prompt)}.",
                              "prompt", "invalid_type")
    wants_usage = bool(opts and opts.get("include_usage") is True)
    return OpenAIRequest(endpoint, body, model, stream, wants_usage, conversation)


def usage_added(req: OpenAIRequest) -> bool:
    """Whether the gateway asks the backend for a stream's usage on the client's behalf (the gateway counts
    tokens; the client must not see the extra chunk). Responses API streams always end with usage."""
    return req.stream and not req.wants_usage and req.endpoint != RESPONSES


def upstream_body(req: OpenAIRequest, served_model: str) -> bytes:
    """The body for the backend: the public model name replaced, usage requested when `usage_added`."""
    body = dict(req.body)
    body["model"] = served_model
    if usage_added(req):
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        # vLLM reports usage on every chunk only when include_usage is set too: the client did not set it,
        # so it must not get continuous usage either (it would not, calling vLLM directly)
        opts.pop("continuous_usage_stats", None)
        body["stream_options"] = opts
    return orjson.dumps(body)


def with_model(body: dict[str, Any], served_model: str) -> bytes:
    return orjson.dumps({**body, "model": served_model})
