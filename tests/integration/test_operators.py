"""The operator surface over real HTTP: admin API and CLI, registry retention, concurrency, protection."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from gateway.cli import app as cli
from judges.queue import JudgeQueue
from monitoring.controller import Controller, ControllerConfig
from router.registry import DAY
from router.store import StateStore, connect
from tests.support.servers import RedisServer, ThreadServer

ADMIN = {"authorization": "Bearer admin-secret"}
READ = {"authorization": "Bearer read-secret"}


@pytest.fixture
def gw(backend_factory, gateway_factory):
    _, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft")
    versions = [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base", "metadata": {"run": "r1"}},
                {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft", "metadata": {"run": "r2"}},
                {"name": "v3", "base_url": f"{c.url}/v1", "model": "ft", "metadata": {"run": "r3"}}]
    srv = gateway_factory(versions, [{"name": "bot", "stable": "v1"}], controller={"enabled": False})
    srv.backend_urls = (s.url, c.url)  # type: ignore[attr-defined]
    return srv


def post(gw, path, body=None, headers=ADMIN):
    return httpx.post(f"{gw.url}{path}", json=body or {}, headers=headers, timeout=10)


def served_by(gw, n=20) -> set[str]:
    return {httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "user": f"u{i}", "messages": []}
                       ).headers["x-cliffguard-version"] for i in range(n)}


def test_every_operation_through_the_api(gw):
    assert post(gw, "/admin/aliases/bot/rollout", {"candidate": "v2"}).json()["phase"] == "shadow"
    r = post(gw, "/admin/aliases/bot/promote", {"reason": "looks good"})
    assert r.status_code == 200 and r.json()["after"]["weight_pct"] == 1 and r.json()["before"]["stage"] == 0
    assert post(gw, "/admin/aliases/bot/pause").json()["after"]["phase"] == "paused"
    assert post(gw, "/admin/aliases/bot/pause").status_code == 409
    assert post(gw, "/admin/aliases/bot/resume").json()["after"]["phase"] == "canary"
    assert post(gw, "/admin/aliases/bot/pin", {"category": "math"}).json()["after"]["pinned_categories"] == ["math"]
    r = post(gw, "/admin/aliases/bot/pin", {"category": "cooking"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_category"
    assert post(gw, "/admin/aliases/bot/unpin", {"category": "math"}).json()["after"]["pinned_categories"] == []
    full = post(gw, "/admin/aliases/bot/promote", {"full": True}).json()["after"]
    assert (full["stable"], full["candidate"], full["previous_stable"]) == ("v2", None, "v1")
    assert served_by(gw) == {"v2"}
    # two weeks later, the previous stable is still one click away
    r = post(gw, "/admin/aliases/bot/rollback", {"reason": "regression found in production"})
    assert r.status_code == 200 and r.json()["after"]["stable"] == "v1"
    assert served_by(gw) == {"v1"}
    events = httpx.get(f"{gw.url}/admin/events?count=20", headers=READ).json()["events"]
    rb = next(e for e in events if e["type"] == "rolled_back")
    assert rb["actor"] == "ops" and rb["by"] == "operator" and rb["reason"] == "regression found in production"
    assert rb["before"]["stable"] == "v2" and rb["after"]["stable"] == "v1" and rb["ts"]
    assert post(gw, "/admin/aliases/bot/rollout", {"candidate": "v2"}).status_code == 200
    r = post(gw, "/admin/aliases/bot/abort", {})
    assert r.status_code == 400 and "reason" in r.json()["error"]["message"]
    assert post(gw, "/admin/aliases/bot/abort", {"reason": "wrong adapter"}).json()["after"]["phase"] == "aborted"


def test_auth_reasons_unknowns_and_errors(gw):
    assert post(gw, "/admin/aliases/bot/rollback", {"reason": "x" * 5}, headers={}).status_code == 401
    r = post(gw, "/admin/aliases/bot/rollback", {"reason": "xxxxx"}, headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = post(gw, "/admin/aliases/bot/rollback", {"reason": "xxxxx"}, headers=READ)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{gw.url}/admin/state", headers=READ).status_code == 200
    r = post(gw, "/admin/aliases/bot/rollback", {})
    assert r.status_code == 400 and r.json()["error"]["param"] == "reason"
    r = post(gw, "/admin/aliases/bot/rollback", {"reason": "xxxxx", "to": "v9"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"
    assert post(gw, "/admin/aliases/nope/pause").status_code == 404
    assert post(gw, "/admin/aliases/bot/rollout", {"candidate": "v9"}).status_code == 404
    assert post(gw, "/admin/aliases/bot/rollout", {"candidate": "v1"}).status_code == 400
    r = httpx.post(f"{gw.url}/admin/aliases/bot/pause", content=b"{not json", headers=ADMIN)
    assert r.status_code == 400 and "Traceback" not in r.text


async def test_concurrent_rollbacks_make_one_change_and_a_clear_message(gw):
    post(gw, "/admin/aliases/bot/rollout", {"candidate": "v2"})
    post(gw, "/admin/aliases/bot/promote")
    async with httpx.AsyncClient(timeout=10) as h:
        rs = await asyncio.gather(*[h.post(f"{gw.url}/admin/aliases/bot/rollback", headers=ADMIN,
                                           json={"reason": f"operator {i} clicked"}) for i in range(2)])
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 409], [r.text for r in rs]
    refused = next(r for r in rs if r.status_code == 409)
    assert "Nothing to roll back" in refused.json()["error"]["message"]
    events = httpx.get(f"{gw.url}/admin/events?count=10", headers=READ).json()["events"]
    assert [e["type"] for e in events].count("rolled_back") == 1


def test_a_second_rollback_click_never_puts_an_older_version_into_production(gw):
    # v1 -> v2 promoted; then a rollout of v3 on top of it
    post(gw, "/admin/aliases/bot/rollout", {"candidate": "v2"})
    post(gw, "/admin/aliases/bot/promote", {"full": True})
    post(gw, "/admin/aliases/bot/rollout", {"candidate": "v3"})
    seen = next(a for a in httpx.get(f"{gw.url}/admin/state", headers=READ).json()["aliases"] if a["name"] == "bot")
    assert (seen["stable"], seen["candidate"], seen["previous_stable"]) == ("v2", "v3", "v1")
    click = {"reason": "v3 answers badly", "expected_revision": seen["revision"]}
    first = post(gw, "/admin/aliases/bot/rollback", click)
    assert first.status_code == 200 and first.json()["after"]["stable"] == "v2"
    second = post(gw, "/admin/aliases/bot/rollback", click)  # the same click again, from the same page
    assert second.status_code == 409 and second.json()["error"]["code"] == "stale_state"
    assert "now: stable v2, no candidate, phase rolled_back" in second.json()["error"]["message"]
    again = post(gw, "/admin/aliases/bot/rollback", {"reason": "the controller already did it; me too"})
    assert again.status_code == 409 and "--to" in again.json()["error"]["message"]
    assert served_by(gw) == {"v2"}  # stable unchanged: v1 did not come back from weeks ago
    events = httpx.get(f"{gw.url}/admin/events?count=10", headers=READ).json()["events"]
    assert [e["type"] for e in events].count("rolled_back") == 1
    explicit = post(gw, "/admin/aliases/bot/rollback", {"reason": "really back to v1", "to": "v1"})
    assert explicit.status_code == 200 and served_by(gw) == {"v1"}


async def test_registry_retention_register_retire_and_rollback_to_retained(gw, redis_srv, key_prefix):
    s_url, c_url = gw.backend_urls
    r = post(gw, "/admin/versions", {"name": "v7", "base_url": f"{c_url}/v1", "model": "ft",
                                      "metadata": {"dataset": "tickets-v4"}})
    assert r.status_code == 200, r.text
    bad = post(gw, "/admin/versions", {"name": "v8", "base_url": f"{c_url}/v1", "model": "missing-model"})
    assert bad.status_code == 422 and "not served" in bad.json()["error"]["message"]
    assert post(gw, "/admin/versions", {"name": "v7", "base_url": f"{s_url}/v1", "model": "base"}).status_code == 409
    assert post(gw, "/admin/versions/v1/retire", {"reason": "old one"}).status_code == 409  # in use
    assert post(gw, "/admin/versions/v2/retire", {}).status_code == 400  # reason required
    assert post(gw, "/admin/versions/v2/retire", {"reason": "superseded by v7"}).status_code == 200

    client = connect(redis_srv.url)
    store = StateStore(client, key_prefix)
    now = [time.time()]
    ctl = Controller(ControllerConfig(retention_days=30), store, JudgeQueue(client, key_prefix), ["other"],
                     clock=lambda: now[0], instance="housekeeper")
    await ctl.lead()
    await ctl.housekeeping()  # v7 registered but unused: retired now; v2 keeps its operator retirement
    now[0] += 29 * DAY
    assert (await ctl.housekeeping())[1] == []
    state = httpx.get(f"{gw.url}/admin/versions", headers=READ).json()
    assert {v["name"] for v in state["versions"]} == {"v1", "v2", "v3", "v7"}
    # day 29: any retained version can be made stable again in one action
    await asyncio.sleep(0.3)
    r = post(gw, "/admin/aliases/bot/rollback", {"reason": "back to the tickets-v4 model", "to": "v7"})
    assert r.status_code == 200 and served_by(gw) == {"v7"}
    now[0] += 2 * DAY  # day 31
    _, pruned = await ctl.housekeeping()
    assert "v7" not in pruned  # in use again: un-retired, kept
    assert "v2" in pruned and await client.hget(f"{key_prefix}:versions", "v2") is None
    await asyncio.sleep(0.3)
    r = post(gw, "/admin/aliases/bot/rollback", {"reason": "try the pruned one", "to": "v2"})
    assert r.status_code == 404 and "pruned" in r.json()["error"]["message"]
    await client.aclose()


def test_cli_operations(gw):
    runner = CliRunner()
    env = {"CLIFFGUARD_URL": gw.url, "CLIFFGUARD_TOKEN": "admin-secret", "COLUMNS": "200"}

    def run(*args, ok=True):
        r = runner.invoke(cli, list(args), env=env)
        assert (r.exit_code == 0) == ok, r.output
        return r.output

    assert "phase shadow" in run("rollout", "start", "bot", "--candidate", "v2", "--reason", "new")
    assert "1%" in run("rollout", "promote", "bot")
    assert "paused" in run("rollout", "pause", "bot")
    assert "canary" in run("rollout", "resume", "bot")
    assert "ok" in run("rollout", "pin", "bot", "math") and "ok" in run("rollout", "unpin", "bot", "math")
    out = run("status")
    assert "bot" in out and "canary" in out and "v2" in out
    assert "v1" in run("versions") and "run=r1" in run("versions")
    assert "no candidate" in run("rollout", "rollback", "bot", "--reason", "bad answers")
    second = run("rollout", "rollback", "bot", "--reason", "again", ok=False)  # a second rollback: refused
    assert "409" in second and "--to" in second
    assert "│ v1 " in run("status") and "rolled_back" in run("status")
    assert "rolled_back by ops" in run("events")
    r = runner.invoke(cli, ["rollout", "pause", "bot"], env={**env, "CLIFFGUARD_TOKEN": "read-secret"})
    assert r.exit_code == 1 and "403" in r.output


def test_rate_limit_cors_origin_and_openapi(gw):
    with httpx.Client(base_url=gw.url, headers=READ) as h:
        codes = [h.get("/admin/whoami").status_code for _ in range(500)]  # margin on a loaded machine
    assert 429 in codes and codes[0] == 200
    with httpx.Client(base_url=gw.url, headers=ADMIN) as h:
        writes = [h.post("/admin/aliases/nope/pause", json={}).status_code for _ in range(60)]
    assert writes[0] == 404 and 429 in writes  # changes have their own, tighter budget
    r = httpx.options(f"{gw.url}/admin/state", headers={"origin": "https://evil.example",
                                                        "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    r = post(gw, "/admin/aliases/bot/pause", headers={**ADMIN, "origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin"
    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/admin/aliases/{alias}/rollback" in spec["paths"]
    assert "Rollback" in spec["components"]["schemas"]


def test_operator_actions_during_a_redis_outage_say_nothing_was_changed(backend_factory, gateway_factory):
    srv = RedisServer().start()
    try:
        _, s = backend_factory("stable", model="base")
        _, c = backend_factory("cand", model="ft")
        versions = [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                    {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}]
        gw = gateway_factory(versions, [{"name": "bot", "stable": "v1"}], controller={"enabled": False},
                             redis_url=srv.url)
        srv.kill()
        changes = [("/admin/aliases/bot/rollout", {"candidate": "v2", "reason": "new"}),
                   ("/admin/aliases/bot/rollback", {"reason": "bad answers"}),
                   ("/admin/versions", {"name": "v3", "base_url": f"{c.url}/v1", "model": "ft"}),
                   ("/admin/versions/v2/retire", {"reason": "superseded"})]
        for path, body in changes:
            r = post(gw, path, body)
            assert r.status_code == 503, (path, r.text)
            error = r.json()["error"]
            assert error["code"] == "redis_unavailable" and error["type"] == "server_error"
            assert "Redis is unreachable" in error["message"] and "not applied" in error["message"]
        r = httpx.get(f"{gw.url}/admin/events", headers=READ)
        assert r.status_code == 503 and "Redis is unreachable" in r.json()["error"]["message"]
        assert httpx.get(f"{gw.url}/admin/state", headers=READ).status_code == 200  # in-memory state still shown
        srv.start()  # same port, same append-only file: changes work again, and none of the refused ones happened
        deadline = time.time() + 5
        while (r := post(gw, "/admin/aliases/bot/pause")).status_code == 503:
            assert time.time() < deadline
            time.sleep(0.1)
        assert r.status_code == 409  # nothing to pause: the rollout above was not started
        events = httpx.get(f"{gw.url}/admin/events", headers=READ).json()["events"]
        assert not {"rollout_started", "version_registered", "version_retired"} & {e["type"] for e in events}
    finally:
        srv.stop()


async def test_concurrent_registrations_of_one_name_cannot_both_succeed(gw, redis_srv, key_prefix):
    s_url, c_url = gw.backend_urls
    client = connect(redis_srv.url)
    async with httpx.AsyncClient(timeout=10) as h:
        for i in range(5):  # the window was the backend check: both checks passed, then both writes landed
            bodies = [{"name": f"race{i}", "base_url": f"{url}/v1", "model": model}
                      for url, model in ((s_url, "base"), (c_url, "ft"))]
            rs = await asyncio.gather(*[h.post(f"{gw.url}/admin/versions", headers=ADMIN, json=b) for b in bodies])
            assert sorted(r.status_code for r in rs) == [200, 409], [r.text for r in rs]
            winner = next(r.json() for r in rs if r.status_code == 200)
            stored = json.loads(await client.hget(f"{key_prefix}:versions", f"race{i}"))
            assert (stored["base_url"], stored["model"]) == (winner["base_url"], winner["model"])
        same = json.loads(await client.hget(f"{key_prefix}:versions", "race0"))
        again = await h.post(f"{gw.url}/admin/versions", headers=ADMIN,  # the same fields again: no conflict
                             json={"name": "race0", "base_url": same["base_url"], "model": same["model"]})
        assert again.status_code == 200, again.text
    await client.aclose()


class LoraBackend:
    """vLLM's runtime LoRA endpoints, over real HTTP, behind an API key as `vllm serve --api-key` puts them."""

    def __init__(self, key: str) -> None:
        self.key, self.loaded = key, []
        self.app = Starlette(routes=[Route("/v1/models", self.models),
                                     Route("/v1/load_lora_adapter", self.load, methods=["POST"])])

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def models(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "Unauthorized"}, 401)
        return JSONResponse({"object": "list", "data": [{"id": n} for n in ["base", *self.loaded]]})

    async def load(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "Unauthorized"}, 401)
        self.loaded.append((await request.json())["lora_name"])
        return Response("Success")


def test_registering_a_lora_version_sends_its_backend_key(gw, monkeypatch):
    monkeypatch.setenv("LORA_BACKEND_KEY", "backend-secret")
    backend = LoraBackend("backend-secret")
    with ThreadServer(backend.app) as srv:
        r = post(gw, "/admin/versions", {"name": "ft-lora", "base_url": f"{srv.url}/v1", "model": "ft-adapter",
                                         "api_key_env": "LORA_BACKEND_KEY", "lora_path": "/models/ft"})
        assert r.status_code == 200, r.text
        assert backend.loaded == ["ft-adapter"]
        r = post(gw, "/admin/versions", {"name": "no-key", "base_url": f"{srv.url}/v1", "model": "other",
                                         "lora_path": "/models/other"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "lora_load_failed"


# -- admin query parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["count=abc", "count=-5", "count=0", "count=1e3", "count=1001", "count=",
                                   "after=abc", "after=1-2-3", "after=-1", "after=18446744073709551616",
                                   "after=1-18446744073709551616", "after="])
def test_bad_event_query_parameters_are_400(gw, query):
    r = httpx.get(f"{gw.url}/admin/events?{query}", headers=READ)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_query" and r.json()["error"]["param"] in ("count", "after")


@pytest.mark.parametrize("query", ["count=1", "count=1000", "after=0", "after=0-0", "after=00001-1",
                                   "after=18446744073709551615", "after=18446744073709551615-18446744073709551615"])
def test_edge_event_query_parameters_are_served(gw, query):
    r = httpx.get(f"{gw.url}/admin/events?{query}", headers=READ)
    assert r.status_code == 200 and isinstance(r.json()["events"], list), r.text


def test_openapi_declares_the_event_query_parameters(gw):
    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/admin/events"]["get"]["parameters"]}
    assert params["count"]["in"] == "query" and params["count"]["schema"]["maximum"] == 1000
    assert params["after"]["schema"]["type"] == "string" and "pattern" in params["after"]["schema"]
