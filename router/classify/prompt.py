"""What the classifier reads from a request: the system prompt and the user turns (assistant turns are
not read, see `conversation.py`). Completions read the prompt. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.classify.conversation import select_parts

MAX_CHARS = 4000  # per part: the tokenizer truncates to max_tokens anyway; this bounds the work before it


_TEXT_PARTS = ("text", "input_text", "output_text")  # chat content parts, and the Responses API's


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in _TEXT_PARTS)
    return ""


def responses_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Responses API request's `instructions` and `input` as chat messages with text content, so that it
    is read like a chat request: a string input is one user turn; message items keep their role; a
    function call and its output become an assistant line and a tool turn."""
    out: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        out.append({"role": "system", "content": body["instructions"]})
    inp = body.get("input")
    for item in [{"role": "user", "content": inp}] if isinstance(inp, str) else inp if isinstance(inp, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" and isinstance(item.get("role"), str):
            out.append({"role": item["role"], "content": _text(item.get("content"))})
        elif kind == "function_call":
            out.append({"role": "assistant", "content": f"[tool call] {item.get('name')}({item.get('arguments')})"})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "content": output if isinstance(output, str) else _text(output)})
    return out


@dataclass(frozen=True, slots=True)
class PromptParts:
    system: str
    users: tuple[str, ...]

    @property
    def last_user(self) -> str:
        return self.users[-1] if self.users else ""

    def model_parts(self) -> tuple[str, ...]:
        """The texts the model reads, in conversation order (`conversation.select_parts`)."""
        return tuple(p[:MAX_CHARS] for p in select_parts(self.system, list(self.users)))


def prompt_parts(body: Mapping[str, Any]) -> PromptParts:
    messages = body.get("messages")
    if not isinstance(messages, list):
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) else _text(prompt[0]) if isinstance(prompt, list) and prompt else ""
        return PromptParts("", (text if isinstance(text, str) else str(text),))
    system = " ".join(_text(m.get("content")) for m in messages
                      if isinstance(m, dict) and m.get("role") in ("system", "developer"))
    users = tuple(_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user")
    return PromptParts(system, users)
