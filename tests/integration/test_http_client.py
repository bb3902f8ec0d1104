"""The backends' HTTP/1.1 client (`gateway/proxy/http_client.py`) against real servers on loopback: a
scripted raw-socket server for the failure modes (idle connections the backend closed, broken and
malformed answers, silence, bodies framed by the connection's end), and the fake OpenAI backend under
uvicorn for keep-alive and chunked streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from gateway.proxy.http_client import ConnectError, Origin, Pool, PoolLimits, ProtocolError, ReadTimeout
from tests.support.fake_backend import FakeBackend
from tests.support.servers import ThreadServer, free_port

JSON = [(b"content-type", b"application/json")]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

class RawServer:
    """Answers each connection with a script; counts connections and requests."""

    def __init__(self, script: Callable[..., object]) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        self.requests += 1
        return head + await reader.readexactly(length)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(self, reader, writer)  # type: ignore[misc]
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test ended
        finally:
            writer.close()

    def pool(self, **limits: float) -> Pool:
        return Pool(Origin("http", "127.0.0.1", self.port), PoolLimits(**limits))  # type: ignore[arg-type]


async def keep_answering(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await server.read_request(reader)
        writer.write(OK)


async def post(pool: Pool, body: bytes = b"{}") -> tuple[int, bytes]:
    r = await pool.request("POST", "/v1/chat/completions", JSON, body)
    data = await r.read()
    r.release()
    return r.status, data


@pytest.fixture
async def fake_backend() -> AsyncIterator[Pool]:
    with ThreadServer(FakeBackend(model="m", chunks=40).app) as server:
        pool = Pool(Origin.of(server.url), PoolLimits(max_connections=4))
        yield pool
        pool.close()


async def test_answers_reuse_one_keepalive_connection() -> None:
    async with RawServer(keep_answering) as server:
        pool = server.pool()
        for _ in range(5):
            assert await post(pool) == (200, b"{}")
        assert (server.connections, server.requests) == (1, 5)


async def test_a_connection_the_backend_closed_while_idle_is_replaced_and_the_request_sent_again() -> None:
    """A backend's keep-alive timeout (vLLM's uvicorn: 5 s) closes idle connections; a request written on
    one just as it closes must not fail: the backend never read it, so it is sent on a new connection."""
    async def answer_once_then_close_silently(server: RawServer, reader: asyncio.StreamReader,
                                              writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read(1)  # the next request's first byte: closed without an answer, as an idle timeout does

    async with RawServer(answer_once_then_close_silently) as server:
        pool = server.pool()
        assert await post(pool) == (200, b"{}")
        assert await post(pool) == (200, b"{}")
        # the second request went out on the first connection, which closed without reading it whole, and
        # was sent again on a second one
        assert (server.connections, server.requests) == (2, 2)


async def test_a_new_connection_closed_before_an_answer_is_an_error_not_a_retry() -> None:
    async def close_at_once(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)

    async with RawServer(close_at_once) as server:
        with pytest.raises(ProtocolError, match="before answering"):
            await post(server.pool())
        assert server.connections == 1


async def test_refused_connection_is_a_connect_error() -> None:
    pool = Pool(Origin("http", "127.0.0.1", free_port()), PoolLimits(connect_s=2))
    with pytest.raises(ConnectError, match="could not connect"):
        await post(pool)


async def test_a_silent_backend_times_out_before_its_head_and_between_chunks() -> None:
    async def head_then_silence(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            await asyncio.sleep(5)  # no head at all
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(5)  # the next chunk never comes

    async with RawServer(head_then_silence) as server:
        pool = server.pool(read_s=0.3)
        with pytest.raises(ReadTimeout):
            await post(pool)
        r = await pool.request("POST", "/", JSON, b"{}")
        chunks = r.chunks()
        assert await chunks.__anext__() == b"abc"
        with pytest.raises(ReadTimeout):
            await chunks.__anext__()
        r.close()


async def test_a_body_cut_short_and_a_malformed_answer_are_protocol_errors() -> None:
    async def cut_or_garble(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\"")
        else:
            writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()

    async with RawServer(cut_or_garble) as server:
        pool = server.pool()
        r = await pool.request("POST", "/", JSON, b"{}")
        with pytest.raises(ProtocolError, match="before the end"):
            await r.read()
        r.close()
        with pytest.raises(ProtocolError, match="malformed"):
            await post(pool)


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async def close_delimited(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await writer.drain()

    async with RawServer(close_delimited) as server:
        pool = server.pool()
        assert await post(pool) == (200, b"all of it")
        assert await post(pool) == (200, b"all of it")  # not reused: it was closed
        assert server.connections == 2


async def test_the_pool_limit_queues_requests_and_a_full_pool_times_out() -> None:
    gate = asyncio.Event()

    async def slow(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            await gate.wait()
            writer.write(OK)

    async with RawServer(slow) as server:
        pool = server.pool(max_connections=1, pool_s=0.3)
        first = asyncio.ensure_future(post(pool))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectError, match="no free connection"):
            await post(pool)
        second = asyncio.ensure_future(post(pool))
        await asyncio.sleep(0.05)
        gate.set()
        assert await first == (200, b"{}") and await second == (200, b"{}")
        assert server.connections == 1


async def test_a_cancelled_request_drops_its_connection() -> None:
    """The handler cancels when its client goes away: the backend must see the connection close (vLLM then
    aborts the generation), and the pool must not hand the connection out again."""
    closed = asyncio.Event()

    async def never_answer(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            await reader.read(1)  # returns at EOF: the client closed
            closed.set()
        else:
            writer.write(OK)
            await writer.drain()

    async with RawServer(never_answer) as server:
        pool = server.pool()
        task = asyncio.ensure_future(post(pool))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.wait_for(closed.wait(), 2)
        assert await post(pool) == (200, b"{}")
        assert server.connections == 2


async def test_chunked_streams_from_a_real_server(fake_backend: Pool) -> None:
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    for _ in range(2):  # the second on the same connection
        r = await fake_backend.request("POST", "/v1/chat/completions", JSON, body)
        assert r.status == 200 and r.header("Content-Type").startswith("text/event-stream")
        events = b"".join([c async for c in r.chunks()]).split(b"\n\n")
        r.release()
        assert events[-2] == b"data: [DONE]" and len(events) > 4
    plain = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    status, data = await post(fake_backend, plain)
    assert status == 200 and orjson.loads(data)["choices"]


async def test_a_body_larger_than_the_read_ahead_arrives_whole_when_read_slowly() -> None:
    big = bytes(range(256)) * 16_384  # 4 MiB: reading pauses past 256 KiB buffered and resumes as it drains

    async def send_big(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)
        await writer.drain()
        await reader.read(1)

    async with RawServer(send_big) as server:
        r = await server.pool().request("POST", "/", JSON, b"{}")
        got = []
        async for chunk in r.chunks():
            got.append(chunk)
            await asyncio.sleep(0.001)
        r.release()
        assert b"".join(got) == big
