"""Who may do what, and what leaks: client keys and admin tokens on the OpenAI endpoints, and webhook
failures that do not log their secret URL."""

from __future__ import annotations

import asyncio
import logging

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
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
