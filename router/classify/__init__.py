"""Capability classifier: every request labelled, from its conversation (system prompt and user turns),
with one configured category.

`RequestClassifier.begin()` runs the cheap layers inline (explicit category, rules) and otherwise hands
the prompt to the micro-batching service, returning a future: routing awaits it only for pinned categories
(bounded), and the work after the response gets it by a callback (`when_labelled`), so the model never sits
on the request's critical path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from router.classify.layers import HEADER, InvalidCategory, Label, decide_before_model, explicit_category
from router.classify.prompt import prompt_parts
from router.classify.service import LabelService
from router.classify.taxonomy import OTHER, UNCLASSIFIED, CompiledRules, Taxonomy, TaxonomyConfig

__all__ = ["HEADER", "OTHER", "UNCLASSIFIED", "InvalidCategory", "Label", "RequestClassifier", "Taxonomy",
           "TaxonomyConfig", "resolve", "when_labelled"]


class RequestClassifier:
    def __init__(self, taxonomy: Taxonomy, service: LabelService | None) -> None:
        self.taxonomy = taxonomy
        self.allowed = taxonomy.names
        self.rules = CompiledRules.of(taxonomy)
        self.service = service  # None: model disabled; unmatched requests are `other`

    def begin(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> Label | asyncio.Future[Label]:
        """Raises InvalidCategory for a bad explicit category (the caller answers 400)."""
        parts = prompt_parts(body)
        label = decide_before_model(explicit_category(headers, body, self.allowed), self.rules, parts)
        if label is not None:
            return label
        if self.service is None:
            return Label(OTHER, 0.0, "disabled")
        return self.service.submit(parts.model_parts())


def when_labelled(pending: Label | asyncio.Future[Label], timeout_s: float, then: Callable[[Label], None]) -> None:
    """Calls `then(label)` exactly once: now if the label is ready, else when the model answers, or with
    `unclassified` after `timeout_s`. Cheaper than awaiting (no waiter or task per request), for work that
    happens after the response."""
    if isinstance(pending, Label):
        then(pending)
        return
    if pending.done():
        then(pending.result())
        return
    loop = asyncio.get_running_loop()

    def finish(label: Label) -> None:
        if timer is not None:
            timer.cancel()
        pending.remove_done_callback(on_done)
        then(label)

    def on_done(fut: asyncio.Future[Label]) -> None:
        finish(fut.result() if not fut.cancelled() else Label(UNCLASSIFIED, 0.0, "unclassified"))

    timer: asyncio.TimerHandle | None = None
    pending.add_done_callback(on_done)
    timer = loop.call_later(timeout_s, finish, Label(UNCLASSIFIED, 0.0, "unclassified"))


async def resolve(pending: Label | asyncio.Future[Label], timeout_s: float) -> Label:
    """The label, waiting at most `timeout_s` for the model; `unclassified` past it."""
    if isinstance(pending, Label):
        return pending
    try:
        return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
    except TimeoutError:
        return Label(UNCLASSIFIED, 0.0, "unclassified")
