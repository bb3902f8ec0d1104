"""The gateway's HTTP protocol corks writes to the client until the end of the event loop's step
(`gateway/processes/http_protocol.py`): one system call for a response's head and body."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.processes.corked import CorkedTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


async def test_writes_in_one_step_leave_together_and_close_sends_what_is_pending_first() -> None:
    raw = RecordingTransport()
    corked = CorkedTransport(cast(asyncio.Transport, raw), asyncio.get_running_loop())
    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.write(b"{}")
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    corked.write(b"last")
    corked.close()  # a connection closed after its answer: the answer goes first
    assert raw.writes[-1] == b"last" and raw.closed
    assert corked.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else is the transport's


async def test_nothing_is_written_to_a_transport_already_closing() -> None:
    raw = RecordingTransport()
    corked = CorkedTransport(cast(asyncio.Transport, raw), asyncio.get_running_loop())
    corked.write(b"data")
    raw.closed = True  # the client went away before the step ended
    await asyncio.sleep(0)
    assert raw.writes == []
