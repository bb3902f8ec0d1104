"""Parsing and checking an OpenAI request body: pure, no I/O.

The gateway only checks the fields it reads itself (model, stream, stream_options, messages/prompt,
user, metadata); every other field is passed to the backend untouched, which validates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import bad_request

CHAT = "chat"
COMPLETIONS = "completions"


@dataclass(slots=True)
class OpenAIRequest:
    endpoint: str
    body: dict[str, Any]
    model: str
    stream: bool
    wants_usage: bool  # the client asked for stream_options.include_usage itself


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _expect(body: dict[str, Any], field: str, types: tuple[type, ...], what: str) -> Any:
    v = body.get(field)
    if v is not None and (not isinstance(v, types) or (bool not in types and isinstance(v, bool))):
        raise bad_request(f"Invalid type for '{field}': expected {what}, got {_type_name(v)}.", field,
                          "invalid_type")
    return v


def parse(raw: bytes, endpoint: str) -> OpenAIRequest:
    if not raw:
        raise bad_request("Request body is empty; expected a JSON object.", None, "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"Request body is not valid JSON: {e}.", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"Request body must be a JSON object, got {_type_name(body)}.", None, "invalid_json")

    model = body.get("model")
    if model is None or model == "":
        raise bad_request("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise bad_request(f"Invalid type for 'model': expected string, got {_type_name(model)}.", "model",
                          "invalid_type")
    stream = bool(_expect(body, "stream", (bool,), "boolean"))
    opts = _expect(body, "stream_options", (dict,), "object")
    _expect(body, "user", (str,), "string")
    _expect(body, "metadata", (dict,), "object")

    if endpoint == CHAT:
        messages = body.get("messages")
        if messages is None:
            raise bad_request("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
        if not isinstance(messages, list):
            raise bad_request(f"Invalid type for 'messages': expected array, got {_type_name(messages)}.",
                              "messages", "invalid_type")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise bad_request(f"Invalid value for 'messages[{i}]': expected an object with a string "
                                  "'role'.", f"messages[{i}]", "invalid_value")
    else:
        prompt = body.get("prompt")
        if prompt is None:
            raise bad_request("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        if not isinstance(prompt, str | list):
            raise bad_request(f"Invalid type for 'prompt': expected string or array, got {_type_name(prompt)}.",
                              "prompt", "invalid_type")
    wants_usage = bool(opts and opts.get("include_usage") is True)
    return OpenAIRequest(endpoint, body, model, stream, wants_usage)


def upstream_body(req: OpenAIRequest, served_model: str) -> bytes:
    """The body for the backend: the public model name replaced, usage requested for streams."""
    body = dict(req.body)
    body["model"] = served_model
    if req.stream and not req.wants_usage:
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        body["stream_options"] = opts
    return orjson.dumps(body)
