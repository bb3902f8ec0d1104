"""Writes corked until the end of the event loop's current step: everything written during one step
leaves in one system call. The client connections (`http_protocol.py`: a response's head and body, stream
events that arrive together) and the workers' link to the classifier process (`classifier_link.py`: the
requests one step accepted) both write through it."""

from __future__ import annotations

import asyncio
from typing import Any


class CorkedTransport:
    """Buffers writes made during one step of the event loop and sends them as one."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, pause_reading, get_extra_info...
        return getattr(self._transport, name)
