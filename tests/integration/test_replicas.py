"""Two gateway replicas sharing one real Redis: same routing, changes everywhere within 1 s, and no
failed request while Redis is killed and restarted."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import redis
from typer.testing import CliRunner

from gateway.cli import app as cli
from tests.support.metrics import scrape
from tests.support.servers import RedisServer

ADMIN = {"authorization": "Bearer admin-secret"}


def versions_and_alias(backend_factory, weight=10.0):
    _, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft")
    return ([{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
             {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
            [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": weight}])


def arms(gw, users):
    with httpx.Client(base_url=gw.url, timeout=10) as h:
        return {u: h.post("/v1/chat/completions", json={"model": "bot", "user": u, "messages": []}
                          ).headers["x-cliffguard-version"] for u in users}


def wait_for(pred, timeout=1.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


def test_two_replicas_route_identically_and_changes_apply_on_both_within_1s(backend_factory, gateway_factory):
    versions, aliases = versions_and_alias(backend_factory, weight=30)
    a, b = gateway_factory(versions, aliases), gateway_factory(versions, aliases)
    users = [f"user{i}" for i in range(60)]
    before = arms(a, users)
    assert before == arms(b, users) and set(before.values()) == {"v1", "v2"}

    r = httpx.put(f"{a.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2", "weight_pct": 0})
    assert r.status_code == 200 and r.json()["weight_pct"] == 0
    took = wait_for(lambda: set(arms(b, users[:10]).values()) == {"v1"}, timeout=1.0)
    assert took < 1.0
    assert set(arms(a, users).values()) == {"v1"} and set(arms(b, users).values()) == {"v1"}


def test_the_state_read_from_a_replica_is_current_however_long_its_poll_interval(backend_factory, gateway_factory):
    versions, aliases = versions_and_alias(backend_factory, weight=30)
    a, b = (gateway_factory(versions, aliases, state_refresh_s=1.0) for _ in range(2))
    for weight in (0, 40, 10):  # each read comes well inside b's 1 s poll interval
        r = httpx.put(f"{a.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2", "weight_pct": weight})
        assert r.status_code == 200
        state = httpx.get(f"{b.url}/admin/state", headers=ADMIN).json()
        assert [x["weight_pct"] for x in state["aliases"]] == [weight]


def test_raising_weight_never_moves_users_back(backend_factory, gateway_factory):
    versions, aliases = versions_and_alias(backend_factory, weight=5)
    gw = gateway_factory(versions, aliases)
    users = [f"u{i}" for i in range(80)]
    prev = arms(gw, users)
    for w in (20, 50, 90):
        httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2", "weight_pct": w})
        now = arms(gw, users)
        assert not [u for u in users if prev[u] == "v2" and now[u] == "v1"]
        prev = now


def test_admin_api_auth(backend_factory, gateway_factory):
    versions, aliases = versions_and_alias(backend_factory)
    gw = gateway_factory(versions, aliases)
    body = {"candidate": "v2", "weight_pct": 50}
    assert httpx.put(f"{gw.url}/admin/aliases/bot/split", json=body).status_code == 401
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", json=body, headers={"authorization": "Bearer read-secret"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{gw.url}/admin/state", headers={"authorization": "Bearer read-secret"}).status_code == 200
    r = httpx.put(f"{gw.url}/admin/aliases/nope/split", json=body, headers=ADMIN)
    assert r.status_code == 404
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", json={"candidate": "zzz", "weight_pct": 5}, headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", json={"candidate": "v2", "weight_pct": 500}, headers=ADMIN)
    assert r.status_code == 400 and "weight_pct" in r.json()["error"]["message"]


def test_cli_rollout_set_and_status(backend_factory, gateway_factory):
    versions, aliases = versions_and_alias(backend_factory)
    gw = gateway_factory(versions, aliases)
    runner = CliRunner()
    env = {"CLIFFGUARD_URL": gw.url, "CLIFFGUARD_TOKEN": "admin-secret", "COLUMNS": "200"}
    r = runner.invoke(cli, ["rollout", "set", "bot", "--candidate", "v2", "--weight", "25", "--reason", "t"], env=env)
    assert r.exit_code == 0, r.output
    assert "v2" in r.output and "25%" in r.output
    r = runner.invoke(cli, ["status"], env=env)
    assert r.exit_code == 0 and "bot" in r.output and "25%" in r.output
    r = runner.invoke(cli, ["status"], env={**env, "CLIFFGUARD_TOKEN": "bad"})
    assert r.exit_code == 1 and "401" in r.output
    events = httpx.get(f"{gw.url}/admin/events", headers=ADMIN).json()["events"]
    assert events[0]["type"] == "split_set" and events[0]["actor"] == "ops" and events[0]["reason"] == "t"
    assert events[0]["before"]["weight_bp"] == 1000 and events[0]["after"]["weight_bp"] == 2500


@pytest.fixture
def own_redis():
    srv = RedisServer(appendonly=True).start()
    yield srv
    srv.stop()


def test_redis_killed_and_restarted_fails_no_request(backend_factory, gateway_factory, own_redis):
    versions, aliases = versions_and_alias(backend_factory, weight=50)
    gw = gateway_factory(versions, aliases, redis_url=own_redis.url)
    stop = threading.Event()
    results: list[int] = []

    def traffic() -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as h:
            i = 0
            while not stop.is_set():
                stream = i % 2 == 0
                r = h.post("/v1/chat/completions", json={"model": "bot", "user": f"u{i}", "stream": stream,
                                                         "messages": [{"role": "user", "content": "q"}]})
                results.append(r.status_code)
                i += 1
    t = threading.Thread(target=traffic)
    t.start()
    time.sleep(0.5)
    own_redis.kill()
    wait_for(lambda: scrape(gw.url, "cliffguard_redis_up") == 0, timeout=3)
    ready = httpx.get(f"{gw.url}/readyz", headers=ADMIN).json()  # the details need a token
    assert ready["status"] == "degraded" and not ready["redis"]["ok"]
    time.sleep(1.0)
    own_redis.start()  # same port, same append-only file
    wait_for(lambda: scrape(gw.url, "cliffguard_redis_up") == 1, timeout=5)
    time.sleep(0.3)
    stop.set()
    t.join()
    assert len(results) > 50 and set(results) == {200}
    # after recovery, changes flow again
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2", "weight_pct": 0})
    assert r.status_code == 200
    assert set(arms(gw, [f"x{i}" for i in range(20)]).values()) == {"v1"}


def test_redis_restarted_empty_is_reseeded_with_the_last_state(backend_factory, gateway_factory, key_prefix):
    srv = RedisServer(appendonly=False).start()
    try:
        versions, aliases = versions_and_alias(backend_factory, weight=10)
        gw = gateway_factory(versions, aliases, redis_url=srv.url)
        httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2", "weight_pct": 0})
        srv.kill()
        srv.start()  # no persistence: it comes back empty
        raw = redis.Redis(port=srv.port)
        wait_for(lambda: raw.hget(f"{key_prefix}:aliases", "bot") is not None, timeout=3)
        restored = json.loads(raw.hget(f"{key_prefix}:aliases", "bot"))
        assert restored["weight_bp"] == 0  # the change made before is not undone by the empty Redis
    finally:
        srv.stop()


async def test_a_refresh_never_applies_an_older_state_after_a_newer_one(redis_srv, key_prefix):
    """The poller and an admin endpoint refresh at the same moment: the load that started first, which
    holds the older state, must not overwrite the newer one when its answer comes back last."""
    from router.live_state import LiveState
    from router.state import AliasState, RoutingSnapshot
    from router.store import StateStore, connect

    class SlowFirstLoad(StateStore):
        def __init__(self, *args):
            super().__init__(*args)
            self.loads, self.loading = 0, asyncio.Event()

        async def load(self) -> RoutingSnapshot:
            snap = await super().load()
            self.loads += 1
            if self.loads == 1:  # the first answer is read, then held back while the state changes
                self.loading.set()
                await asyncio.sleep(0.3)
            return snap

    client = connect(redis_srv.url)
    store = SlowFirstLoad(client, key_prefix)
    await store.write(aliases=[AliasState(name="bot", stable="v1", candidate="v2", weight_bp=5000)])
    state = LiveState(store, refresh_s=60)  # no poller interfering: the two refreshes are the test's
    try:
        first = asyncio.create_task(state.refresh())
        await store.loading.wait()
        newer = await store.write(aliases=[AliasState(name="bot", stable="v1")])  # e.g. a rollback
        await state.refresh()
        await first
        assert state.snapshot.revision == newer and state.snapshot.aliases["bot"].candidate is None
    finally:
        await client.aclose()
