"""One gateway per fuzz module (hypothesis runs many examples against the same servers)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.admin.api import RateLimiter
from gateway.app import create_app
from gateway.processes.http_protocol import GatewayHttpProtocol
from tests.conftest import gateway_settings
from tests.support.fake_backend import FakeBackend
from tests.support.servers import RedisServer, ThreadServer

ADMIN = {"authorization": "Bearer admin-secret"}
MAX_BODY = 256 * 1024  # small, so that bodies past the limit are cheap to generate


@pytest.fixture(scope="module")
def fuzz_gateway(request: pytest.FixtureRequest, redis_srv: RedisServer, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ThreadServer]:
    backends = [ThreadServer(FakeBackend(name, model=model).app).start()
                for name, model in (("stable", "base"), ("cand", "ft"))]
    versions = [{"name": "v1", "base_url": f"{backends[0].url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{backends[1].url}/v1", "model": "ft"}]
    aliases = [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 50},
               {"name": "solo", "stable": "v1"}]
    prefix = f"fuzz{os.getpid()}-{request.module.__name__.rsplit('.', 1)[-1]}"  # each module its own state
    settings = gateway_settings(redis_srv.url, prefix,
                                tmp_path_factory.mktemp("fuzz"), versions, aliases, controller={"enabled": False},
                                limits={"max_body_bytes": MAX_BODY})
    with pytest.MonkeyPatch.context() as mp:
        # the per-token rate limit would answer most generated calls with a 429 and test nothing else
        mp.setattr(RateLimiter, "allow", lambda self, key: True)
        gw = ThreadServer(create_app(settings), http=GatewayHttpProtocol).start()
        yield gw
        gw.stop()
    for b in backends:
        b.stop()
