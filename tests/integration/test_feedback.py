"""User feedback over real HTTP with the official request ids: joined to alias, arm, version and category;
idempotent per request id; 404 for an unknown id, 400 for a bad score, 401 like the proxy; metrics per
arm and category; regenerates counted; and the negative-feedback guard rolling a rollout back."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import orjson
import redis

ADMIN = {"authorization": "Bearer admin-secret"}
KEY = {"authorization": "Bearer client-key"}
AUTH = {"api_keys": [{"name": "app", "key": "client-key"}],
        "admin_tokens": [{"name": "ops", "token": "admin-secret", "role": "admin"}]}
POLICY = {"stages": [{"name": "half", "weight_pct": 50}, {"name": "full", "weight_pct": 100}], "min_bake_s": 3600,
          "guards": {"negative_feedback": {"ratio": 1.0, "slack": 0.0, "min_requests": 20}}}


def _gateway(backend_factory, gateway_factory):
    _, s = backend_factory("stable", model="base", text="stable says hi")
    _, c = backend_factory("cand", model="ft", text="candidate says hi")
    return gateway_factory([{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                            {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
                           [{"name": "bot", "stable": "v1"}], auth=AUTH,
                           controller={"interval_s": 0.2, "policy": POLICY}, feedback={"enabled": True})


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_feedback_is_joined_idempotent_and_checked(backend_factory, gateway_factory, redis_srv, key_prefix):
    gw = _gateway(backend_factory, gateway_factory)
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2", "weight_pct": 50})
    assert r.status_code == 200
    before = httpx.get(f"{gw.url}/metrics").text
    async with httpx.AsyncClient(base_url=gw.url, headers=KEY) as h:
        answers = []
        for i in range(16):
            resp = await h.post("/v1/chat/completions", headers={"x-cliffguard-category": "coding"}, json={
                "model": "bot", "user": f"u{i}", "messages": [{"role": "user", "content": f"q{i}"}]})
            answers.append((resp.headers["x-request-id"], resp.headers["x-cliffguard-arm"],
                            resp.headers["x-cliffguard-version"]))
        arms = {a for _, a, _ in answers}
        assert arms == {"stable", "candidate"}, arms
        rid, arm, version = answers[0]
        first = await h.post("/v1/feedback", json={"request_id": rid, "score": "down",
                                                   "comment": "wrong, mail me at a@b.co"})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["recorded"], body["arm"], body["version"], body["category"], body["alias"], body["sentiment"]) == \
            (True, arm, version, "coding", "bot", "negative")
        again = await h.post("/v1/feedback", json={"request_id": rid, "score": "down"})
        assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["recorded"] is False
        other = await h.post("/v1/feedback", json={"request_id": rid, "score": 5})
        assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
        unknown = await h.post("/v1/feedback", json={"request_id": "0" * 24, "score": "up"})
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"
        for bad in (7, 0, "meh", True, 2.5, None):
            r = await h.post("/v1/feedback", json={"request_id": answers[1][0], "score": bad})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_score", (bad, r.text)
        r = await h.post("/v1/feedback", content=b"{not json")
        assert r.status_code == 400 and "error" in r.json()
        r = await h.post("/v1/feedback", json={"request_id": answers[1][0], "score": 4},
                         headers={"authorization": "Bearer nope"})
        assert r.status_code == 401
        for rid2, _, _ in answers[1:]:
            assert (await h.post("/v1/feedback", json={"request_id": rid2, "score": 4})).status_code == 200
        # the stored comment is redacted like everything judging stores
        stored = orjson.loads(redis.Redis.from_url(redis_srv.url).get(f"{key_prefix}:fb:{rid}"))
        assert stored["comment"] == "wrong, mail me at [REDACTED]", stored
        # regenerate: the same conversation sent again counts the first answer as regenerated
        convo = {"model": "bot", "user": "u-regen", "messages": [{"role": "user", "content": "again please"}]}
        r1 = await h.post("/v1/chat/completions", headers={"x-cliffguard-category": "writing"}, json=convo)
        await asyncio.sleep(0.4)  # the request log is written every 250 ms
        await h.post("/v1/chat/completions", headers={"x-cliffguard-category": "writing"}, json=convo)
        await asyncio.sleep(0.6)
    after = httpx.get(f"{gw.url}/metrics").text
    per_arm = {a: _metric(after, "cliffguard_feedback_total", alias="bot", arm=a, category="coding")
               - _metric(before, "cliffguard_feedback_total", alias="bot", arm=a, category="coding") for a in arms}
    assert per_arm == {a: sum(1 for _, x, _ in answers if x == a) for a in arms}
    assert _metric(after, "cliffguard_feedback_total", arm=arm, sentiment="negative") >= 1
    regen_arm = r1.headers["x-cliffguard-arm"]
    assert _metric(after, "cliffguard_regenerations_total", alias="bot", arm=regen_arm, category="writing") \
        - _metric(before, "cliffguard_regenerations_total", alias="bot", arm=regen_arm, category="writing") == 1
    report = httpx.get(f"{gw.url}/admin/reports/rollout/bot?format=json", headers=ADMIN).json()
    rows = {(f["arm"], f["category"]): f for f in report["feedback"]}
    assert rows[(arm, "coding")]["negative"] == "1"
    assert rows[(regen_arm, "writing")]["regenerated"] == "1"


async def test_the_negative_feedback_guard_rolls_back(backend_factory, gateway_factory):
    gw = _gateway(backend_factory, gateway_factory)
    r = httpx.post(f"{gw.url}/admin/aliases/bot/rollout", headers=ADMIN, json={"candidate": "v2"})
    assert r.status_code == 200 and r.json()["weight_pct"] == 50
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=gw.url, headers=KEY) as h:
        i = 0
        while True:
            assert time.monotonic() < deadline, "the feedback guard did not trip"
            resp = await h.post("/v1/chat/completions", json={
                "model": "bot", "user": f"user-{i}", "messages": [{"role": "user", "content": f"question {i}"}]})
            i += 1
            if resp.headers["x-cliffguard-version"] == "v1" and resp.headers["x-cliffguard-arm"] == "stable":
                score = "up"
            else:
                score = "down"  # users dislike the candidate's answers
            fb = await h.post("/v1/feedback", json={"request_id": resp.headers["x-request-id"], "score": score})
            assert fb.status_code == 200, fb.text
            events = httpx.get(f"{gw.url}/admin/events?count=5", headers=ADMIN).json()["events"]
            done = next((e for e in events if e["type"] == "rolled_back"), None)
            if done is not None:
                break
    assert done["by"] == "controller" and "negative_feedback" in done["reason"], done
    assert re.search(r"\d+ vs \d+ feedback", done["reason"])
