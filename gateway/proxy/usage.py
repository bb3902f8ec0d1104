"""Token counts as the gateway records them, whatever the endpoint: pure."""

from __future__ import annotations

from typing import Any

import orjson


def normalized_usage(usage: Any) -> dict[str, Any] | None:
    """Chat and completions report `prompt_tokens`/`completion_tokens`, the Responses API
    `input_tokens`/`output_tokens`: the latter are given the former's names too."""
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" not in usage and "input_tokens" in usage:
        return {**usage, "prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens")}
    return usage


def body_usage(body: bytes) -> dict[str, Any] | None:
    """The usage of a non-streamed JSON answer (read after the client has it)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return normalized_usage(parsed.get("usage")) if isinstance(parsed, dict) else None
