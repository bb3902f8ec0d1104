from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.processes.http_protocol import GatewayHttpProtocol
from tests.support.fake_backend import FakeBackend
from tests.support.servers import RedisServer, ThreadServer

_prefix = itertools.count()


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RedisServer]:
    """A private real Redis for the test session (its own port: some tests kill and restart it)."""
    srv = RedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def key_prefix() -> str:
    return f"t{os.getpid()}-{next(_prefix)}"


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., tuple[FakeBackend, ThreadServer]]]:
    started: list[ThreadServer] = []

    def make(name: str = "fake", **script: Any) -> tuple[FakeBackend, ThreadServer]:
        fb = FakeBackend(name, **script)
        srv = ThreadServer(fb.app).start()
        started.append(srv)
        return fb, srv

    yield make
    for s in started:
        s.stop()


def gateway_settings(redis_url: str, prefix: str, tmp: Path, versions: list[dict[str, Any]],
                     aliases: list[dict[str, Any]], **extra: Any) -> Settings:
    auth = extra.pop("auth", {"admin_tokens": [{"name": "ops", "token": "admin-secret", "role": "admin"},
                                               {"name": "viewer", "token": "read-secret", "role": "read"}]})
    return Settings(redis_url=redis_url, key_prefix=prefix, data_dir=tmp, versions=versions,
                    aliases=aliases, auth=auth, **extra)


@pytest.fixture
def gateway_factory(redis_srv: RedisServer, key_prefix: str, tmp_path: Path
                    ) -> Iterator[Callable[..., ThreadServer]]:
    started: list[ThreadServer] = []

    def make(versions: list[dict[str, Any]], aliases: list[dict[str, Any]], **extra: Any) -> ThreadServer:
        settings = gateway_settings(extra.pop("redis_url", redis_srv.url), extra.pop("prefix", key_prefix),
                                    tmp_path, versions, aliases, **extra)
        srv = ThreadServer(create_app(settings), http=GatewayHttpProtocol).start()  # as `cliffguard serve` runs
        started.append(srv)
        return srv

    yield make
    for s in started:
        s.stop()
