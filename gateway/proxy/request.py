"""Parsing and checking an OpenAI request body: pure, no I/O.

The gateway only checks the fields it reads itself (model, stream, stream_options, messages/prompt/input,
instructions, user, metadata); every other field is passed to the backend untouched, which validates it.
Two limits apply to every field, because the body is re-encoded for the backend and the judges: nesting
(orjson encodes at most 254 levels, and the judge worker's parser reads at most 200 with the sample around
the body) and integers (orjson reads an integer beyond 64 bits as a float, which would change the number).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import bad_request
from router.classify.prompt import responses_messages

MAX_DEPTH = 128  # levels of JSON nesting, the body itself being level 1; no real request comes close
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson reads and writes as an integer
# orjson turns an integer literal outside that range into a float of at least this magnitude
_HUGE_POS, _HUGE_NEG = float(2**64), -float(2**63)

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
    _check_values(raw, body)
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
            _check_parts(m.get("content"), i)
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


def _check_parts(content: Any, i: int) -> None:
    """The text of a text part is read (classifier, judges), so it must be a string, as OpenAI requires."""
    if isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and not isinstance(part.get("text"), str):
                raise bad_request(f"Invalid type for 'messages[{i}].content[{j}].text': expected string, got "
                                  f"{_type_name(part.get('text'))}.", f"messages[{i}].content[{j}].text",
                                  "invalid_type")


class _OutOfRange(str):
    """An integer literal that does not fit in 64 bits (from the exact re-parse)."""


def _check_values(raw: bytes, body: dict[str, Any]) -> None:
    """Refuse nesting deeper than MAX_DEPTH and integers beyond 64 bits, naming the top-level field.

    One walk over the containers (strings are not looked into, so a long prompt costs nothing); only a
    body holding a float big enough to be a mangled integer is parsed again, exactly, to tell. Which field
    it is, is only looked for once something was found."""
    deep, huge = _scan(body, 1)
    if not (deep or huge):
        return
    suspect: list[str] = []
    for field, value in body.items():
        deep, huge = _scan(value, 2) if type(value) in (dict, list) else (False, _huge(value))
        if deep:
            raise bad_request(f"Invalid value for '{field}': JSON nested more than {MAX_DEPTH} levels deep "
                              f"(the limit is {MAX_DEPTH}).", field, "json_too_deep")
        if huge:
            suspect.append(field)
    exact = json.loads(raw, parse_int=_int_literal)
    for field in suspect:
        literal = _first_out_of_range(exact.get(field))
        if literal is not None:
            shown = literal if len(literal) <= 40 else f"{literal[:20]}...({len(literal)} digits)"
            raise bad_request(f"Invalid value for '{field}': integer {shown} is out of range; integers must "
                              f"fit in 64 bits ({_INT_MIN} to {_INT_MAX}).", field, "integer_out_of_range")


def _huge(v: Any) -> bool:
    return type(v) is float and (v >= _HUGE_POS or v <= _HUGE_NEG)


def _scan(root: dict[str, Any] | list[Any], depth: int) -> tuple[bool, bool]:
    """(deeper than MAX_DEPTH, holds a float that may be a mangled integer), `root` being at `depth`."""
    huge = False
    stack: list[tuple[Any, int]] = [(root, depth)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            return True, huge
        for child in node.values() if type(node) is dict else node:
            t = type(child)
            if t is str:
                continue
            if t is dict or t is list:
                push((child, depth + 1))
            elif t is float and (child >= _HUGE_POS or child <= _HUGE_NEG):
                huge = True
    return False, huge


def _int_literal(s: str) -> int | _OutOfRange:
    digits = len(s) - s.startswith("-")
    if digits > 20:  # before int(): Python refuses to convert more than 4300 digits
        return _OutOfRange(s)
    v = int(s)
    return v if _INT_MIN <= v <= _INT_MAX else _OutOfRange(s)


def _first_out_of_range(value: Any) -> str | None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _OutOfRange):
            return str(v)
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


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
