"""What a model answered, as the judges see it: the text and any tool calls, from chat and completions
answers and from the Responses API's (`output` items). Pure.

Agent traffic answers with tool calls (often with no text at all). Such an answer is not empty: the judge
is shown each call's name and arguments beside the text, and two answers are compared on both.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field, model_validator


class ToolCall(BaseModel):
    name: str
    arguments: str = ""  # as the model wrote it (a JSON string for well-behaved models)

    def normalized_arguments(self) -> Any:
        try:
            return orjson.loads(self.arguments)
        except orjson.JSONDecodeError:
            return " ".join(self.arguments.split())


class Answer(BaseModel):
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # records written before tool calls were kept hold a plain string
        return {"text": value} if isinstance(value, str) else value

    @property
    def empty(self) -> bool:
        return not self.text.strip() and not self.tool_calls

    def render(self) -> str:
        """The answer as the judge reads it: the text, then one line per tool call."""
        calls = [f"[tool call] {c.name}({c.arguments})" for c in self.tool_calls]
        return "\n".join([self.text, *calls] if self.text else calls)

    def same_as(self, other: Answer) -> bool:
        """Identical for judging purposes: same words (whitespace aside) and the same calls."""
        return (" ".join(self.text.split()) == " ".join(other.text.split())
                and [(c.name, c.normalized_arguments()) for c in self.tool_calls]
                == [(c.name, c.normalized_arguments()) for c in other.tool_calls])


def _calls(raw: Any) -> list[ToolCall]:
    out = []
    for c in raw if isinstance(raw, list) else []:
        fn = c.get("function") if isinstance(c, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            args = fn.get("arguments")
            text = args if isinstance(args, str) else orjson.dumps(args).decode()
            out.append(ToolCall(name=fn["name"], arguments=text))
    return out


def from_choice(choice: Any, endpoint: str) -> Answer | None:
    """The answer in one choice of a non-streamed chat or completions response."""
    if not isinstance(choice, dict):
        return None
    if endpoint != "chat":
        text = choice.get("text")
        return Answer(text=text) if isinstance(text, str) else None
    message = choice.get("message")
    if not isinstance(message, dict):
        return None
    text = message.get("content")
    calls = _calls(message.get("tool_calls"))
    if not isinstance(text, str) and not calls:
        return None
    return Answer(text=text if isinstance(text, str) else "", tool_calls=calls)


def from_output(output: Any) -> Answer | None:
    """The answer in a Responses API `output`: the text of its messages (refusals included) and its function
    calls, in order; reasoning and built-in tool items are not part of the answer."""
    if not isinstance(output, list):
        return None
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                field = _RESPONSE_TEXT.get(part.get("type")) if isinstance(part, dict) else None
                if field and isinstance(text := part.get(field), str):
                    texts.append(text)
        elif item.get("type") == "function_call" and isinstance(item.get("name"), str):
            args = item.get("arguments")
            calls.append(ToolCall(name=item["name"], arguments=args if isinstance(args, str) else ""))
    return Answer(text="".join(texts), tool_calls=calls)  # an output with no message is an empty answer


_RESPONSE_TEXT: dict[Any, str] = {"output_text": "text", "refusal": "refusal"}  # content part type -> text field
_RESPONSES = "responses"
_TERMINAL = frozenset({"response.completed", "response.incomplete"})


def from_response(data: Any, endpoint: str) -> Answer | None:
    """The answer in a parsed non-streamed response (the first choice, or the Responses output)."""
    if not isinstance(data, dict):
        return None
    if endpoint == _RESPONSES:
        return from_output(data.get("output"))
    choices = data.get("choices")
    return from_choice(choices[0], endpoint) if isinstance(choices, list) and choices else None


def from_body(body: bytes, endpoint: str) -> Answer | None:
    try:
        return from_response(orjson.loads(body), endpoint)
    except orjson.JSONDecodeError:
        return None


def _from_responses_sse(chunks: list[bytes]) -> Answer | None:
    """A streamed Responses answer: the terminal event's `response.output` (the whole answer), else the
    items the `response.output_item.done` events carried, in output order."""
    done: dict[int, Any] = {}
    for line in b"".join(chunks).splitlines():
        if not line.startswith(b"data:"):
            continue
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("type") in _TERMINAL and isinstance(event.get("response"), dict):
            return from_output(event["response"].get("output"))
        if event.get("type") == "response.output_item.done" and isinstance(event.get("output_index"), int):
            done[event["output_index"]] = event.get("item")
    return from_output([done[i] for i in sorted(done)]) if done else None


def from_sse(chunks: list[bytes], endpoint: str) -> Answer | None:
    """The streamed answer (first choice), rebuilt from the forwarded SSE bytes: text deltas joined, tool
    call deltas merged by their index (name once, arguments in pieces)."""
    if endpoint == _RESPONSES:
        return _from_responses_sse(chunks)
    parts: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    seen = False
    for line in b"".join(chunks).splitlines():
        if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
            continue
        try:
            choices = orjson.loads(line[5:]).get("choices") or []
        except (orjson.JSONDecodeError, AttributeError):
            continue
        for c in choices:
            if not isinstance(c, dict) or c.get("index", 0) != 0:
                continue
            if endpoint != "chat":
                if isinstance(piece := c.get("text"), str):
                    parts.append(piece)
                    seen = True
                continue
            delta = c.get("delta") or {}
            if isinstance(piece := delta.get("content"), str):
                parts.append(piece)
                seen = True
            for tc in delta.get("tool_calls") or []:
                if not isinstance(tc, dict):
                    continue
                slot = calls.setdefault(int(tc.get("index", 0)), {"name": "", "arguments": ""})
                fn = tc.get("function") or {}
                if isinstance(fn.get("name"), str):
                    slot["name"] += fn["name"]
                if isinstance(fn.get("arguments"), str):
                    slot["arguments"] += fn["arguments"]
    tool_calls = [ToolCall(**calls[i]) for i in sorted(calls) if calls[i]["name"]]
    if not seen and not tool_calls:
        return None
    return Answer(text="".join(parts), tool_calls=tool_calls)
