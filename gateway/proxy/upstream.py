"""Calls to the backends: one keep-alive connection pool per backend origin (`http_client.Pool`).

The gateway's own small HTTP/1.1 client rather than httpx or aiohttp on this path: measured here
(`bench/client_overhead.py`), a round trip costs ~450 us of client CPU with httpx, ~200 us with aiohttp,
~80 us with this one; that decides much of the gateway's added latency and throughput.
"""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.config import Limits, Timeouts
from gateway.proxy.http_client import ConnectError, Origin, Pool, PoolLimits, Response, UpstreamError
from router.state import VersionRecord

# everything a backend call can raise that means "the backend failed", not "the gateway has a bug"
UPSTREAM_ERRORS = (UpstreamError, asyncio.TimeoutError)
_JSON = [(b"content-type", b"application/json")]


class Failure(StrEnum):
    """Why a backend call failed (metric label values)."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"  # only a failure when the candidate answers it (see the proxy's fallback)
    PROTOCOL = "protocol"
    MIDSTREAM = "midstream"


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, ConnectError):
        return Failure.CONNECT
    if isinstance(exc, asyncio.TimeoutError):  # includes the client's ReadTimeout
        return Failure.TIMEOUT
    return Failure.PROTOCOL


def server_root(base_url: str) -> str:
    """vLLM serves /tokenize, /detokenize and /version beside /v1, not under it."""
    return base_url.rstrip("/").removesuffix("/v1")


def _headers(version: VersionRecord, json_body: bool) -> list[tuple[bytes, bytes]]:
    headers = _JSON if json_body else []
    if version.api_key_env and (key := os.environ.get(version.api_key_env)):
        return [*headers, (b"authorization", f"Bearer {key}".encode("latin-1"))]
    return headers


class Backends:
    """Owns the connection pools; a pool is made on first use and kept across state changes."""

    def __init__(self, timeouts: Timeouts, limits: Limits) -> None:
        # read bounds every wait for bytes (the response head, then each chunk)
        self._limits = PoolLimits(max_connections=limits.max_connections_per_backend, connect_s=timeouts.connect,
                                  pool_s=timeouts.pool, read_s=timeouts.read)
        self._pools: dict[Origin, Pool] = {}
        self._bases: dict[str, tuple[Pool, str]] = {}  # base URL -> its pool and path prefix

    def _pool(self, origin: Origin) -> Pool:
        p = self._pools.get(origin)
        if p is None:
            p = self._pools[origin] = Pool(origin, self._limits)
        return p

    async def send(self, version: VersionRecord, path: str, body: bytes) -> Response:
        """POST and wait for the response head; the caller reads the body (streamed) and then calls
        release() (connection back to the pool) or close() (connection dropped: the backend cancels)."""
        base = self._bases.get(version.base_url)
        if base is None:
            base = self._bases[version.base_url] = (self._pool(Origin.of(version.base_url)),
                                                    urlsplit(version.base_url).path.rstrip("/"))
        pool, prefix = base
        return await pool.request("POST", prefix + path, _headers(version, True), body)

    async def call(self, method: str, version: VersionRecord, url: str, body: bytes | None = None) -> Response:
        u = urlsplit(url)
        target = f"{u.path or '/'}?{u.query}" if u.query else (u.path or "/")
        return await self._pool(Origin.of(url)).request(method, target, _headers(version, body is not None), body)

    async def models(self, version: VersionRecord, timeout_s: float = 2.0) -> list[dict[str, Any]]:
        """The backend's model list (GET {base_url}/models). Raises UPSTREAM_ERRORS, or ValueError when the
        answer is not a model list."""
        async with asyncio.timeout(timeout_s):
            async with await self.call("GET", version, f"{version.base_url}/models") as r:
                if r.status != 200:
                    raise ValueError(f"GET /models answered {r.status}")
                answer = await r.read()
        try:
            payload = orjson.loads(answer)
        except orjson.JSONDecodeError:
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
        for p in self._pools.values():
            p.close()
        self._pools.clear()
