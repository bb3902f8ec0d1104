"""Who may do what, and what leaks: client keys and admin tokens on the OpenAI endpoints, what readiness
tells whom (and that one alias's broken backend does not take the replica out), and webhook failures
that do not log their secret URL."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitoring.notify import Notifier
from tests.support.servers import ThreadServer, free_port

ADMIN = {"authorization": "Bearer admin-secret"}
READ = {"authorization": "Bearer read-secret"}
CLIENT = {"authorization": "Bearer client-secret"}
MSG = [{"role": "user", "content": "hi"}]


# -- who may authenticate where ---------------------------------------------------------------------------


def test_a_read_only_token_is_not_a_client_key(backend_factory, gateway_factory):
    _, s = backend_factory("stable", model="base")
    auth = {"api_keys": [{"name": "product", "key": "client-secret"}],
            "admin_tokens": [{"name": "ops", "token": "admin-secret", "role": "admin"},
                             {"name": "viewer", "token": "read-secret", "role": "read"}]}
    gw = gateway_factory([{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"}],
                         [{"name": "bot", "stable": "v1"}], auth=auth)
    chat = {"model": "bot", "messages": MSG}
    prompt = {"model": "bot", "prompt": "hi"}
    for headers in (READ, {}, {"authorization": "Bearer wrong"}):
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers=headers).status_code == 401
        assert httpx.post(f"{gw.url}/v1/completions", json=prompt, headers=headers).status_code == 401
        assert httpx.get(f"{gw.url}/v1/models", headers=headers).status_code == 401
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers=CLIENT).status_code == 200
    assert httpx.get(f"{gw.url}/v1/models", headers=CLIENT).status_code == 200
    # forcing a version takes an admin token, which is also accepted as a client key for that reason
    forced = {"x-cliffguard-version": "v1"}
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers={**CLIENT, **forced}).status_code == 403
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers={**ADMIN, **forced})
    assert r.status_code == 200 and r.headers["x-cliffguard-arm"] == "forced"


# -- readiness ------------------------------------------------------------------------------------------


class CountingBackend:
    """A real OpenAI-style /v1/models endpoint that counts the probes and can be switched off."""

    def __init__(self, model: str) -> None:
        self.model, self.probes, self.up = model, 0, True
        self.app = Starlette(routes=[Route("/v1/models", self.models)])

    async def models(self, request: Request) -> Response:
        self.probes += 1
        if not self.up:
            return JSONResponse({"error": "down"}, 503)
        return JSONResponse({"object": "list", "data": [{"id": self.model}]})


def test_readiness_is_per_alias_cached_and_detailed_only_for_operators(gateway_factory):
    good, bad = CountingBackend("base"), CountingBackend("other")
    with ThreadServer(good.app) as g, ThreadServer(bad.app) as b:
        closed = f"http://127.0.0.1:{free_port()}/v1"
        versions = [{"name": "v1", "base_url": f"{g.url}/v1", "model": "base"},
                    {"name": "v2", "base_url": f"{b.url}/v1", "model": "other"},
                    {"name": "gone", "base_url": closed, "model": "x"}]
        aliases = [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 10},
                   {"name": "broken", "stable": "gone"}]
        gw = gateway_factory(versions, aliases)
        probes = gw.server.config.app.probes  # the gateway's cache; its refresh age is shortened below

        # one alias's backend is down: the replica stays ready (and says it is degraded to operators)
        r = httpx.get(f"{gw.url}/readyz")
        assert r.status_code == 200 and r.json() == {"status": "degraded"}  # no details, no hosts
        detail = httpx.get(f"{gw.url}/readyz", headers=READ).json()
        assert detail["aliases"]["bot"]["ready"] and not detail["aliases"]["broken"]["ready"]
        assert "127.0.0.1" in detail["aliases"]["broken"]["stable"]["detail"]  # named to operators only
        assert detail["redis"]["ok"] and detail["state_loaded"]
        assert httpx.get(f"{gw.url}/readyz", headers=CLIENT).json() == {"status": "degraded"}

        # per alias: one answer per alias, for a load balancer in front of one product
        assert httpx.get(f"{gw.url}/readyz?alias=bot").json() == {"alias": "bot", "status": "ready"}
        assert httpx.get(f"{gw.url}/readyz?alias=broken").status_code == 503
        assert httpx.get(f"{gw.url}/readyz?alias=nope").status_code == 503
        assert httpx.get(f"{gw.url}/readyz?alias=nope", headers=ADMIN).json()["detail"] == "unknown alias 'nope'"

        # a probe storm does not reach the backends: results are cached and refreshed in the background
        before = good.probes
        for _ in range(50):
            httpx.get(f"{gw.url}/readyz?alias=bot")
        assert good.probes - before <= 1

        # the candidate going down does not make the alias unready (requests fall back to stable)
        probes.max_age_s = 0.2
        bad.up = False
        deadline = time.monotonic() + 5
        while httpx.get(f"{gw.url}/readyz", headers=READ).json()["aliases"]["bot"]["candidate"]["ok"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(f"{gw.url}/readyz?alias=bot").status_code == 200
        good.up = False  # its stable going down does
        deadline = time.monotonic() + 5
        while httpx.get(f"{gw.url}/readyz?alias=bot").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(f"{gw.url}/readyz").status_code == 200  # and still not the replica


# -- webhooks ---------------------------------------------------------------------------------------------


async def test_a_failing_webhook_is_logged_without_its_url(caplog):
    secret = "T000/B000/XXXXsecretXXXX"
    calls: list[str] = []

    async def hook(request: Request) -> Response:
        calls.append(request.url.path)
        return Response("no", status_code=500)

    with ThreadServer(Starlette(routes=[Route("/services/{rest:path}", hook, methods=["POST"])])) as receiver:
        urls = [f"{receiver.url}/services/{secret}", f"http://127.0.0.1:{free_port()}/services/{secret}",
                f"http://[bad/services/{secret}"]
        notifier = Notifier(urls, timeout_s=2)
        with caplog.at_level(logging.WARNING, logger="cliffguard.notify"):
            notifier.send({"type": "controller_rollback", "alias": "bot", "reason": "reasoning regressed"})
            await notifier.drain()
            await asyncio.sleep(0)
    assert calls == [f"/services/{secret}"]
    failures = [r.getMessage() for r in caplog.records]
    assert len(failures) == 3, failures
    assert all(secret not in line and "/services" not in line for line in failures), failures
    assert "webhook #0 (host 127.0.0.1) failed: answered HTTP 500" in failures
    assert any(line.startswith("webhook #1 (host 127.0.0.1) failed: cannot connect") for line in failures)
