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
_ICONS = {"controller_rollback": ":rotating_light:", "controller_pin_category": ":pushpin:",
          "controller_promote": ":arrow_up:", "controller_complete": ":white_check_mark:",
          "controller_inconclusive": ":hourglass:"}


def slack_text(event: dict[str, Any]) -> str:
    action = event.get("type", "event").removeprefix("controller_").replace("_", " ")
    after = event.get("after", {})
    lines = [f"{_ICONS.get(event.get('type', ''), ':information_source:')} *{event.get('alias')}*: {action} - "
             f"{event.get('reason', '')}",
             f"stable `{after.get('stable')}`, candidate `{after.get('candidate')}`, weight "
             f"{after.get('weight_bp', 0) / 100:g}%, phase {after.get('phase')}"]
    for cat, s in sorted((event.get("categories") or {}).items()):
        lines.append(f"- {cat}: estimate {s['estimate']:+.3f} [{s['lower']:+.3f}, {s['upper']:+.3f}], "
                     f"n={s['n']}, tolerance {s['tolerance']}")
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
