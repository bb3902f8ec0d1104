"""Talking raw HTTP/1.1 to a server, for clients that must misbehave (malformed requests, slow bodies)."""

from __future__ import annotations

import json
import socket


def exchange(url: str, data: bytes, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send raw bytes on a fresh connection; return what came back and whether the server closed it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
            return out, True
        except TimeoutError:
            return out, False


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_openai_error(body: bytes, code: str) -> dict[str, object]:
    error: dict[str, object] = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["type"], error
    return error
