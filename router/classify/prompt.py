"""What the classifier reads from a request: the system prompt, the last user turn and, when that turn
is too short to say much ("and in Rust?"), the previous user turn as context. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SHORT_TURN_WORDS = 8
MAX_CHARS = 2000  # the tokenizer truncates to max_tokens anyway; this bounds the work before it


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
    last_user: str
    context: str  # the previous user turn, when the last one is short

    def classifier_text(self) -> str:
        text = f"{self.context}\n{self.last_user}" if self.context else self.last_user
        return text[:MAX_CHARS]


def prompt_parts(body: Mapping[str, Any]) -> PromptParts:
    messages = body.get("messages")
    if not isinstance(messages, list):
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) else _text(prompt[0]) if isinstance(prompt, list) and prompt else ""
        return PromptParts("", text if isinstance(text, str) else str(text), "")
    system = " ".join(_text(m.get("content")) for m in messages
                      if isinstance(m, dict) and m.get("role") in ("system", "developer"))
    users = [_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = users[-1] if users else ""
    context = users[-2] if len(users) > 1 and len(last.split()) < SHORT_TURN_WORDS else ""
    return PromptParts(system, last, context)
