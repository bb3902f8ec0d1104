"""Sticky traffic split: pure functions, no I/O.

A request's stickiness key (session header, OpenAI `user`, or the conversation's first user message)
is hashed with the alias and rollout id into a bucket in [0, 10_000). The candidate serves buckets below
its weight, so a key keeps its arm while the weight is unchanged and, as the weight grows, keys only move
from stable to candidate, never back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from router.state import BP_MAX


class Arm(StrEnum):
    STABLE = "stable"
    CANDIDATE = "candidate"


def bucket(alias: str, rollout_id: str, key: str) -> int:
    digest = hashlib.blake2b(f"{alias}\x00{rollout_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BP_MAX


def choose_arm(alias: str, rollout_id: str, key: str, weight_bp: int) -> Arm:
    if weight_bp <= 0:
        return Arm.STABLE
    if weight_bp >= BP_MAX:
        return Arm.CANDIDATE
    return Arm.CANDIDATE if bucket(alias, rollout_id, key) < weight_bp else Arm.STABLE


def _first_user_message(body: Mapping[str, Any]) -> str | None:
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                return content if isinstance(content, str) else repr(content)
        return None
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        return repr(prompt[0])
    return None


def stickiness_key(
    order: Sequence[str], headers: Mapping[str, str], body: Mapping[str, Any]
) -> str | None:
    """The first available key in `order` ("header:<name>", "user", "conversation"), tagged by source."""
    for source in order:
        if source.startswith("header:"):
            value = headers.get(source[7:])
            if value:
                return f"h:{value}"
        elif source == "user":
            user = body.get("user")
            if isinstance(user, str) and user:
                return f"u:{user}"
        elif source == "conversation":
            first = _first_user_message(body)
            if first:
                return "c:" + hashlib.blake2b(first.encode(), digest_size=16).hexdigest()
    return None
