"""Connections to the backends: one pooled keep-alive aiohttp session per backend base URL.

aiohttp rather than httpx on this path: measured here (bench/client_overhead.py), an httpx round trip
costs ~450 us of client CPU against ~120 us for aiohttp, whose HTTP parser is in C; that alone decides
whether the gateway meets its added-latency target.
"""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from typing import Any

import aiohttp

from gateway.config import Limits, Timeouts
from router.state import VersionRecord

# everything a backend call can raise that means "the backend failed", not "the gateway has a bug"
UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class Failure(StrEnum):
    """Why a backend call failed (metric label values)."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"  # only a failure when the candidate answers it (see the proxy's fallback)
    PROTOCOL = "protocol"
    MIDSTREAM = "midstream"


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Failure.CONNECT
    if isinstance(exc, asyncio.TimeoutError):  # includes aiohttp's ServerTimeoutError
        return Failure.TIMEOUT
    return Failure.PROTOCOL


def server_root(base_url: str) -> str:
    """vLLM serves /tokenize, /detokenize and /version beside /v1, not under it."""
    return base_url.rstrip("/").removesuffix("/v1")


def _auth_headers(version: VersionRecord) -> dict[str, str]:
    if version.api_key_env and (key := os.environ.get(version.api_key_env)):
        return {"authorization": f"Bearer {key}"}
    return {}


class Backends:
    """Owns the connection pools; a pool is made on first use and kept across state changes."""

    def __init__(self, timeouts: Timeouts, limits: Limits) -> None:
        # sock_read bounds every wait for bytes (the response head, then each chunk)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.pool + timeouts.connect, sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )
        self._limit = limits.max_connections_per_backend
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def session(self, base_url: str) -> aiohttp.ClientSession:
        s = self._sessions.get(base_url)
        if s is None:
            s = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=60, ttl_dns_cache=60),
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trust_env=False,
            )
            self._sessions[base_url] = s
        return s

    async def send(self, version: VersionRecord, path: str, body: bytes) -> aiohttp.ClientResponse:
        """POST and wait for the response head; the caller reads the body (streamed) and then calls
        release() (connection back to the pool) or close() (connection dropped: the backend cancels)."""
        return await self.call("POST", version, f"{version.base_url}{path}", body)

    async def call(self, method: str, version: VersionRecord, url: str, body: bytes | None = None
                   ) -> aiohttp.ClientResponse:
        headers = {"content-type": "application/json", **_auth_headers(version)} if body is not None \
            else _auth_headers(version)
        return await self.session(version.base_url).request(method, url, data=body, headers=headers)

    async def models(self, version: VersionRecord, timeout_s: float = 2.0) -> list[dict[str, Any]]:
        """The backend's model list (GET {base_url}/models). Raises UPSTREAM_ERRORS, or ValueError when the
        answer is not a model list."""
        async with self.session(version.base_url).get(
            f"{version.base_url}/models", headers=_auth_headers(version),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as r:
            if r.status != 200:
                raise ValueError(f"GET /models answered {r.status}")
            try:
                payload = await r.json(content_type=None)
            except ValueError:
                raise ValueError("GET /models did not return JSON") from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise ValueError("GET /models did not return a model list")
        return [m for m in data if isinstance(m, dict)]

    async def probe(self, version: VersionRecord, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Is the backend up and serving this version's model? (GET {base_url}/models)"""
        try:
            served = {str(m.get("id")) for m in await self.models(version, timeout_s)}
        except UPSTREAM_ERRORS as e:
            return False, f"{classify(e).value}: {type(e).__name__}: {e}"
        except ValueError as e:
            return False, str(e)
        if version.model not in served:
            return False, f"model {version.model!r} not served (serves: {sorted(served)})"
        return True, "ok"

    async def aclose(self) -> None:
        for s in self._sessions.values():
            await s.close()
        self._sessions.clear()
