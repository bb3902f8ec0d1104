"""A small HTTP/1.1 client for the backends: keep-alive connection pools over asyncio protocols, the
response parsed by httptools (the C parser uvicorn uses).

Why not aiohttp here: a proxied request is one POST on a pooled connection, relayed as its bytes arrive.
aiohttp's general client (sessions, cookie jars, tracing, redirects, a stream reader per response) cost
the gateway about as much CPU per request as everything else on the proxy path together
(`bench/client_overhead.py`). This client does only what a backend call needs: pooled connections with a
limit, connect and read timeouts, flow control, content-length and chunked bodies, and a retry of a
request whose reused connection the backend had already closed (its keep-alive timeout: nothing was
processed).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 256 * 1024  # unread body bytes buffered before the socket stops being read


class UpstreamError(Exception):
    """The backend failed: no connection, a timeout, a broken or malformed answer."""


class ConnectError(UpstreamError):
    """No connection to the backend (refused, unreachable, or not within the connect or pool timeout)."""


class ReadTimeout(UpstreamError, TimeoutError):
    """The backend sent no byte for longer than the read timeout."""


class ProtocolError(UpstreamError):
    """The backend broke the connection or answered something that is not HTTP/1.1."""


class _ClosedBeforeAnswer(ProtocolError):
    """The connection closed before any byte of the answer: on a reused connection, the backend closed it
    while it was idle (its keep-alive timeout) and never read the request."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return cls(u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        return (self.host if self.port == default else f"{self.host}:{self.port}").encode("idna")


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_connections: int = 512
    connect_s: float = 5.0
    pool_s: float = 5.0  # longest wait for a free connection when all are busy
    read_s: float = 300.0  # longest wait for any byte: the head, then each part of the body
    keepalive_s: float = 60.0


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses the answer, buffers its body with flow control."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_s: float) -> None:
        self.loop = loop
        self.read_s = read_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.used = False  # has answered a request before (a reused connection may be stale)
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self._got_bytes = False
        self._complete = False
        self._keep_alive = False
        self._until_close = False
        self._paused = False

    # -- asyncio protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("backend tried to upgrade the connection"))
        except httptools.HttpParserError as e:
            self._fail(ProtocolError(f"malformed answer from the backend: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and self._head is not None and self._head.done():
            self.on_message_complete()
        elif self._head is not None and not self._complete:
            self._fail(ProtocolError("backend closed the connection before the end of its answer")
                       if self._got_bytes else _ClosedBeforeAnswer("backend closed the connection before answering"))

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()  # only valid until the message completes
        # neither a length nor chunks: the body ends when the backend closes the connection
        framed = {k.lower() for k, _ in self._headers} & {b"content-length", b"transfer-encoding"}
        self._until_close = not framed and self._parser.get_status_code() not in (204, 304)
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._wake()

    # -- used by the pool and the response ---------------------------------------------------------

    def start(self, data: list[bytes]) -> None:
        assert self.transport is not None
        self._headers = []
        self._body.clear()
        self._buffered = 0
        self._error = None
        self._got_bytes = self._complete = self._keep_alive = self._until_close = False
        self._head = self.loop.create_future()
        self.transport.writelines(data)

    async def head(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        assert self._head is not None
        await self._wait(self._head)
        return self._parser.get_status_code(), self._headers

    async def next_chunk(self) -> bytes | None:
        """The body bytes that arrived since the last call (at least one), or None at its end."""
        while not self._body:
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._waiter = self.loop.create_future()
            await self._wait(self._waiter)
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered -= len(data)
        if self._paused and self._buffered <= _HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return self._complete and not self.closed and self._error is None and self._keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def _wait(self, fut: asyncio.Future[None]) -> None:
        if self._error is not None and not fut.done():
            raise self._error
        timer = self.loop.call_later(self.read_s, self._timed_out, fut)
        try:
            await fut
        finally:
            timer.cancel()

    def _timed_out(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            fut.set_exception(ReadTimeout(f"backend sent nothing for {self.read_s:g} s"))

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        for fut in (self._head, self._waiter):
            if fut is not None and not fut.done():
                fut.set_exception(error)
        self.close()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


class Response:
    """A backend's answer: the head is read; the body is read by `read()` or `chunks()`. Then `release()`
    returns the connection to its pool (only when the whole body was read), `close()` drops it (which
    makes the backend stop generating)."""

    __slots__ = ("status", "raw_headers", "_conn", "_pool", "_done")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], conn: _Connection, pool: Pool) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self._conn = conn
        self._pool = pool
        self._done = False

    def header(self, name: str, default: str = "") -> str:
        key = name.lower().encode("latin-1")
        for k, v in self.raw_headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return default

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked encoding decoded)."""
        while (data := await self._conn.next_chunk()) is not None:
            yield data

    async def read(self) -> bytes:
        parts = [data async for data in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._pool.put_back(self._conn)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.close()
            self._pool.put_back(self._conn)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.release()
        else:
            self.close()


class Pool:
    """Keep-alive connections to one origin: at most `max_connections`, the most recently used first."""

    def __init__(self, origin: Origin, limits: PoolLimits) -> None:
        self.origin = origin
        self.limits = limits
        self._idle: list[_Connection] = []
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl = ssl.create_default_context() if origin.scheme == "https" else None
        self._host = origin.host_header  # IDNA-encoded once, not per request

    async def request(self, method: str, path: str, headers: list[tuple[bytes, bytes]],
                      body: bytes | None = None) -> Response:
        """Send a request and wait for the head of its answer. Raises UpstreamError."""
        lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), path.encode(), self._host)]
        lines += [b"%s: %s\r\n" % kv for kv in headers]
        lines.append(b"content-length: %d\r\n\r\n" % len(body) if body is not None else b"\r\n")
        data = [b"".join(lines), body] if body else [b"".join(lines)]
        while True:
            conn = await self._acquire()
            try:
                conn.start(data)
                status, raw_headers = await conn.head()
            except _ClosedBeforeAnswer:
                conn.close()
                self.put_back(conn)
                if conn.used:  # closed by the backend while idle: nothing was processed, send it again
                    continue
                raise
            except BaseException:  # timeout, or the caller cancelled: the backend must stop too
                conn.close()
                self.put_back(conn)
                raise
            conn.used = True
            return Response(status, raw_headers, conn, self)

    def put_back(self, conn: _Connection) -> None:
        """A connection is done with its request: kept when reusable, otherwise counted out."""
        if conn.reusable:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
            self._open -= 1
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                break

    async def _acquire(self) -> _Connection:
        deadline: float | None = None
        while True:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and now - conn.idle_since < self.limits.keepalive_s:
                    return conn
                conn.close()
                self._open -= 1
            if self._open < self.limits.max_connections:
                return await self._connect()
            deadline = deadline if deadline is not None else now + self.limits.pool_s
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - now))
            except TimeoutError:
                raise ConnectError(f"no free connection to {self.origin} within {self.limits.pool_s:g} s "
                                   f"({self.limits.max_connections} in use)") from None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._open += 1
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(loop, self.limits.read_s), self.origin.host, self.origin.port, ssl=self._ssl,
                server_hostname=self.origin.host if self._ssl else None), self.limits.connect_s)
        except TimeoutError:
            self._open -= 1
            raise ConnectError(f"could not connect to {self.origin} within {self.limits.connect_s:g} s") from None
        except OSError as e:
            self._open -= 1
            raise ConnectError(f"could not connect to {self.origin}: {e}") from None
        except BaseException:
            self._open -= 1
            raise
        return conn

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._open -= len(self._idle)
        self._idle.clear()
