"""A minimal async OpenAI-compatible client (aiohttp) for the worker: non-streamed chat, completions and
Responses API calls against a version's backend, and chat calls to the judge endpoint."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import orjson

from judges.answers import from_output

ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
PATHS = {"chat": "/chat/completions", "completions": "/completions", "responses": "/responses"}
# client errors that say nothing about the prompt or the version (retry instead)
TRANSIENT_4XX = frozenset({408, 409, 425, 429})


class CallFailed(Exception):
    def __init__(self, reason: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.status = status  # the HTTP status, when the server answered


class OpenAIHTTP:
    def __init__(self, max_connections: int = 64) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limit = max_connections

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._limit), trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def create(self, base_url: str, endpoint: str, body: dict[str, Any], api_key_env: str | None,
                     timeout_s: float) -> tuple[str, dict[str, Any]]:
        """POST a non-streamed request; returns (the answer's text: the first choice's, or the Responses
        output's, and the whole response)."""
        headers = {"content-type": "application/json"}
        if api_key_env and (key := os.environ.get(api_key_env)):
            headers["authorization"] = f"Bearer {key}"
        try:
            async with self.session.post(f"{base_url}{PATHS[endpoint]}", data=orjson.dumps(body), headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                raw = await r.read()
                if r.status != 200:
                    raise CallFailed(f"http_{r.status}", raw[:300].decode(errors="replace"), r.status)
        except ERRORS as e:
            raise CallFailed("timeout" if isinstance(e, asyncio.TimeoutError) else "connect",
                             f"{type(e).__name__}: {e}") from None
        try:
            data = orjson.loads(raw)
            if endpoint == "responses":
                answer = from_output(data["output"])
                if answer is None:
                    raise TypeError("output is not a list")
                text = answer.text
            else:
                choice = data["choices"][0]
                text = choice["message"]["content"] if endpoint == "chat" else choice["text"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise CallFailed("bad_response", raw[:300].decode(errors="replace")) from None
        return (text if isinstance(text, str) else ""), data  # text: None for a tool-call-only message
