"""A worker's link to the host's classifier process, over a real unix socket: frames, batching across
connections, fail-open while the process is down or dies with requests in flight, and reconnecting. The
model is scripted (the real one runs in tests/integration/test_serve.py)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gateway.config import ClassifierConfig
from gateway.processes.classifier_host import ClassifierHost, serve_model
from gateway.processes.classifier_link import RemoteClassifier
from router.classify.layers import Label
from router.classify.wire import MAX_FRAME, FrameError, FrameReader, frame, parse_replies, parse_request, request_frame


def scripted(calls: list[list[tuple[str, ...]]]):
    def model(batch):
        calls.append(list(batch))
        return [("math" if "sum" in " ".join(parts) else "writing", 0.9) for parts in batch]
    return model


def test_frames_survive_any_split_of_the_stream():
    data = request_frame(1, ("system", "héllo \x00 wörld")) + request_frame(2, ("", "x" * 5000))
    for cut in (1, 3, 4, 5, 17, len(data) - 1):
        reader = FrameReader()
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert [parse_request(o) for o in got] == [(1, ("system", "héllo \x00 wörld")), (2, ("", "x" * 5000))]


@pytest.mark.parametrize("data", [
    (MAX_FRAME + 1).to_bytes(4, "big"),  # a length no request can have
    (3).to_bytes(4, "big") + b"{x]",  # not JSON
])
def test_a_bad_stream_is_a_frame_error(data):
    with pytest.raises(FrameError):
        FrameReader().feed(data)


@pytest.mark.parametrize("obj", [[1], ["1", []], [1, [2]], {"id": 1}])
def test_a_request_of_the_wrong_shape_is_a_frame_error(obj):
    with pytest.raises(FrameError):
        parse_request(obj)


def test_replies_of_the_wrong_shape_are_a_frame_error():
    assert parse_replies([[3, "math", 0.5, "embedding"]]) == [(3, Label("math", 0.5, "embedding"))]
    with pytest.raises(FrameError):
        parse_replies([[3, "math"]])


@contextlib.asynccontextmanager
async def host(path: Path, model, **cfg):
    task = asyncio.create_task(serve_model(model, ClassifierConfig(**cfg), str(path)))
    while not path.exists():
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def linked(path: Path, **kw) -> RemoteClassifier:
    client = RemoteClassifier(str(path), queue_size=kw.pop("queue_size", 512), cache_size=100, retry_s=0.02)
    client.start()
    return client


async def test_two_workers_requests_are_labelled_in_shared_batches(tmp_path):
    calls: list = []
    path = tmp_path / "c.sock"
    async with host(path, scripted(calls), min_confidence=0.3, batch_wait_ms=50):
        a, b = await linked(path), await linked(path)
        assert await a.wait_connected(2) and await b.wait_connected(2)
        futs = [a.submit((f"sum {i}",)) for i in range(10)] + [b.submit((f"poem {i}",)) for i in range(10)]
        labels = await asyncio.wait_for(asyncio.gather(*futs), 5)
        assert [lab.category for lab in labels] == ["math"] * 10 + ["writing"] * 10
        assert {lab.layer for lab in labels} == {"embedding"}
        assert len(calls) == 1 and len(calls[0]) == 20  # one batch for both connections
        again = a.submit(("sum 3",))
        assert again.done() and again.result().category == "math"  # the worker's own cache: no round trip
        a.stop()
        b.stop()


async def test_a_full_batch_starts_without_waiting_for_the_gathering_time(tmp_path):
    calls: list = []
    path = tmp_path / "c.sock"
    async with host(path, scripted(calls), min_confidence=0.3, batch_wait_ms=100, batch_size=4):
        client = await linked(path)
        await client.wait_connected(2)
        futs = [client.submit((f"sum {i}",)) for i in range(5)]
        await asyncio.wait_for(asyncio.gather(*futs[:4]), 5)
        assert not futs[4].done()  # the fifth waits for its batch to gather
        assert (await asyncio.wait_for(futs[4], 5)).category == "math"
        assert [len(c) for c in calls] == [4, 1]
        client.stop()


async def test_unreachable_process_labels_unclassified_at_once_then_reconnects(tmp_path):
    path = tmp_path / "c.sock"
    client = await linked(path)
    assert not await client.wait_connected(0.1)
    early = client.submit(("sum",))
    assert early.done() and early.result().category == "unclassified"
    assert client.stats.overloaded == 1
    calls: list = []
    async with host(path, scripted(calls), min_confidence=0.3, batch_wait_ms=1):
        assert await client.wait_connected(2)
        assert (await asyncio.wait_for(client.submit(("sum",)), 5)).category == "math"  # not cached unclassified
    client.stop()


async def test_requests_in_flight_when_the_process_dies_are_labelled_unclassified(tmp_path):
    path = tmp_path / "c.sock"
    received = asyncio.Event()

    async def dies_after_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        received.set()
        writer.transport.abort()  # killed with the request unanswered

    server = await asyncio.start_unix_server(dies_after_reading, str(path))
    client = await linked(path)
    await client.wait_connected(2)
    fut = client.submit(("sum",))
    assert not fut.done()
    await asyncio.wait_for(received.wait(), 2)
    assert (await asyncio.wait_for(fut, 2)).category == "unclassified"
    server.close()
    client.stop()


async def test_a_bad_reply_closes_the_link_and_fails_what_was_in_flight(tmp_path):
    path = tmp_path / "c.sock"

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(frame({"not": "replies"}))
        await writer.drain()
        await reader.read()  # until the client closes

    server = await asyncio.start_unix_server(garbage, str(path))
    client = await linked(path)
    await client.wait_connected(2)
    assert (await asyncio.wait_for(client.submit(("sum",)), 2)).category == "unclassified"
    server.close()
    client.stop()


async def test_in_flight_requests_are_bounded(tmp_path):
    path = tmp_path / "c.sock"
    async with host(path, scripted([]), min_confidence=0.3, batch_wait_ms=100):
        client = await linked(path, queue_size=3)
        await client.wait_connected(2)
        futs = [client.submit((f"sum {i}",)) for i in range(5)]
        assert [f.done() for f in futs] == [False, False, False, True, True]  # past 3 in flight: shed
        assert client.stats.overloaded == 2
        labels = await asyncio.wait_for(asyncio.gather(*futs), 5)
        assert [lab.category for lab in labels] == ["math"] * 3 + ["unclassified"] * 2
        client.stop()


def test_a_classifier_process_that_cannot_start_stops_serve_with_a_clear_error(tmp_path):
    host = ClassifierHost(ClassifierConfig(artifact=tmp_path / "missing.npz"))
    try:
        with pytest.raises(SystemExit, match="classifier process failed to start"):
            host.start()
    finally:
        host.stop()
    assert not Path(host.path).parent.exists()  # its socket's directory removed
