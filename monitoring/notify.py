"""Webhooks for rollout transitions: a JSON POST whose `text` field is Slack-compatible, sent in the
background (a slow or failing receiver never delays the controller); failures are logged and counted.

A webhook URL is a secret (a Slack URL is its own credential), so a failure is logged with the webhook's
position in the list and its host only, never the URL or an error text that may quote it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from monitoring import metrics as m

log = logging.getLogger("cliffguard.notify")
_ICONS = {"rolled_back": ":rotating_light:", "aborted": ":no_entry:", "category_pinned": ":pushpin:",
          "promoted": ":arrow_up:", "completed": ":white_check_mark:", "inconclusive": ":hourglass:",
          "paused": ":double_vertical_bar:"}


def slack_text(event: dict[str, Any]) -> str:
    kind = event.get("type", "event")
    after = event.get("after", {})
    who = "the controller" if event.get("by") == "controller" else event.get("actor", "?")
    lines = [f"{_ICONS.get(kind, ':information_source:')} *{event.get('alias')}*: {kind.replace('_', ' ')} by "
             f"{who} - {event.get('reason') or ''}",
             f"stable `{after.get('stable')}`, candidate `{after.get('candidate')}`, weight "
             f"{after.get('weight_bp', 0) / 100:g}%, phase {after.get('phase')}"]
    exposure = event.get("exposure") or {}
    cat = event.get("category")
    if cat and kind in ("rolled_back", "category_pinned"):
        lines.append(f"{cat} regressed; {exposure.get(cat, 0)} {cat} requests were served by the candidate "
                     f"before the {'rollback' if kind == 'rolled_back' else 'pin'} "
                     f"({sum(exposure.values())} requests in all)")
    elif exposure and kind in ("rolled_back", "aborted"):
        what = "rollback" if kind == "rolled_back" else "abort"
        lines.append(f"{sum(exposure.values())} requests were served by the candidate before the {what}")
    for c, st in sorted((event.get("categories") or {}).items()):
        lines.append(f"- {c}: estimate {st['estimate']:+.3f} [{st['lower']:+.3f}, {st['upper']:+.3f}], "
                     f"n={st['n']}, tolerance {st['tolerance']}")
    return "\n".join(lines)


class Notifier:
    def __init__(self, urls: list[str], timeout_s: float = 5.0) -> None:
        self.urls = urls
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event: dict[str, Any]) -> None:
        if not self.urls:
            return
        payload = orjson.dumps({**event, "text": slack_text(event)}, default=str)
        for index, url in enumerate(self.urls):
            t = asyncio.create_task(self._post(index, url, payload))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _post(self, index: int, url: str, payload: bytes) -> None:
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as s, s.post(
                    url, data=payload, headers={"content-type": "application/json"}) as r:
                if r.status >= 300:
                    raise aiohttp.ClientResponseError(r.request_info, (), status=r.status)
            m.WEBHOOKS.labels("ok").inc()
        except Exception as e:  # any failure, even a malformed URL: counted and logged, never raised
            m.WEBHOOKS.labels("error").inc()
            log.warning("webhook #%d (host %s) failed: %s", index, _host(url), _describe(e))

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _describe(e: BaseException) -> str:
    """Why a post failed, in words that cannot carry the URL (aiohttp's messages often quote it)."""
    if isinstance(e, aiohttp.ClientResponseError):
        return f"answered HTTP {e.status}"
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"cannot connect ({e.os_error.strerror or type(e.os_error).__name__})"
    if isinstance(e, TimeoutError):
        return "timed out"
    return type(e).__name__
