"""Hypothesis strategies for OpenAI request bodies as JSON text: arbitrary values in every field the gateway
reads (and in others), nesting up to past every parser's limit, long strings, all of unicode (lone
surrogates included, as JSON escapes), and numbers at the edges of every integer and float range.

Bodies are built as text, not dumped from Python objects, so that they can nest deeper than Python's
encoder allows and repeat keys."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

EDGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63),
             -(2**63) - 1, -(2**64), 10**19, 10**20, 10**30, -(10**30), 10**400]
EDGE_FLOATS = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
               1e19, 1.8446744073709552e19, -9.223372036854776e18, 0.1, 1e-400]

texts = st.text(st.characters(codec=None), max_size=40)  # every code point, lone surrogates included
numbers = st.one_of(st.integers(), st.sampled_from(EDGE_INTS), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(EDGE_FLOATS))
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(texts, c, max_size=4),
                      max_leaves=16)


def dumps(v: Any) -> str:
    return json.dumps(v)  # ASCII with \\u escapes: lone surrogates stay expressible


@st.composite
def json_text(draw: st.DrawFn) -> str:
    """A JSON value as text: usually an ordinary one, sometimes nested deep or holding a long string."""
    kind = draw(st.sampled_from(["value", "value", "value", "deep", "long", "raw_number"]))
    if kind == "deep":
        depth = draw(st.one_of(st.integers(1, 1100), st.sampled_from([126, 127, 128, 129, 253, 254, 255, 1023,
                                                                      1024, 1025])))
        inner = dumps(draw(values))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"k":', "}")]))
        return opener * depth + inner + closer * depth
    if kind == "long":
        return dumps(draw(st.sampled_from(["a", "\u00e9", "\U0001f600", "\\", '"'])) * draw(st.integers(0, 300_000)))
    if kind == "raw_number":  # literals Python would not write: huge exponents, many digits, -0
        return draw(st.sampled_from(["1e400", "-1e400", "1" + "0" * 5000, "-0", "0.0000000000000000000001",
                                     "123456789012345678901234567890", "1E+2", "-9223372036854775809"]))
    return dumps(draw(values))


def message(role: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    parts = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]) | values},
                                           optional={"text": values}), max_size=3)
    content = st.one_of(texts.map(dumps), parts.map(dumps), json_text())
    return st.builds(lambda r, c: "{" + f'"role":{dumps(r)},"content":{c}' + "}", role, content) | json_text()


FIELDS: dict[str, st.SearchStrategy[str]] = {
    "model": st.one_of(st.sampled_from(["bot", "solo", "nope", ""]).map(dumps), json_text()),
    "messages": st.one_of(st.lists(message(st.sampled_from(["user", "system", "assistant", "tool"]) | values),
                                   max_size=4).map(lambda ms: "[" + ",".join(ms) + "]"), json_text()),
    "prompt": st.one_of(texts.map(dumps), st.lists(texts).map(dumps), json_text()),
    "stream": st.one_of(st.booleans().map(dumps), json_text()),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": values}).map(dumps), json_text()),
    "user": st.one_of(texts.map(dumps), json_text()),
    "metadata": st.one_of(st.fixed_dictionaries({}, optional={"category": values, "reference": values}
                                                ).map(dumps), json_text()),
    "seed": st.one_of(st.sampled_from(EDGE_INTS).map(dumps), json_text()),
    "max_tokens": st.one_of(st.sampled_from(EDGE_INTS).map(dumps), json_text()),
    "temperature": st.one_of(st.sampled_from(EDGE_FLOATS).map(dumps), json_text()),
    "tools": json_text(),
}


servable_messages = st.lists(st.builds(
    lambda role, content, extra: "{" + f'"role":{dumps(role)},"content":{content}{extra}' + "}",
    st.sampled_from(["user", "system", "developer", "assistant", "tool"]),
    texts.map(dumps) | st.lists(st.one_of(st.builds(lambda t: {"type": "text", "text": t}, texts),
                                          st.just({"type": "image_url", "image_url": {"url": "data:,"}})),
                                max_size=3).map(dumps) | st.none().map(dumps),
    st.sampled_from(["", ',"name":"n"']) | values.map(lambda v: f',"x":{dumps(v)}')), min_size=1, max_size=5)
# optional fields as a client means them (right types, values anywhere in range), some of the time off-type
SERVABLE: dict[str, st.SearchStrategy[str]] = {
    "stream": st.booleans().map(dumps),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | values}).map(dumps),
    "user": texts.map(dumps),
    "metadata": st.fixed_dictionaries({}, optional={
        "category": st.sampled_from(["math", "coding", "other", "Math ", "nope"]) | values,
        "reference": texts | values}).map(dumps),
    "seed": numbers.map(dumps), "max_tokens": numbers.map(dumps), "temperature": numbers.map(dumps),
    "n": numbers.map(dumps), "logit_bias": st.dictionaries(texts, numbers).map(dumps),
    "tools": values.map(dumps), "response_format": values.map(dumps),
}


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A request body. Mostly one a client means to send (model, messages and prompt right, so it reaches the
    backend) with arbitrary values in the optional fields; otherwise anything in any field, some other JSON
    value, or arbitrary bytes."""
    shape = draw(st.sampled_from(["servable"] * 6 + ["wild"] * 3 + ["other_json", "bytes"]))
    if shape == "other_json":
        return draw(json_text()).encode()
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "servable":
        members = [f'"model":{dumps(draw(st.sampled_from(["bot", "solo"])))}',
                   f'"messages":[{",".join(draw(servable_messages))}]',
                   f'"prompt":{dumps(draw(texts | st.lists(texts, min_size=1, max_size=3)))}']
        for name in draw(st.lists(st.sampled_from(sorted(SERVABLE)) | texts, max_size=5, unique=True)):
            sane = SERVABLE.get(name, values.map(dumps))
            members.append(f"{dumps(name)}:{draw(st.one_of(sane, sane, sane, json_text()))}")
        return ("{" + ",".join(members) + "}").encode()
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)) | texts, max_size=8))
    members = [f"{dumps(n)}:{draw(FIELDS[n]) if n in FIELDS else draw(json_text())}" for n in names]
    return ("{" + ",".join(members) + "}").encode()
