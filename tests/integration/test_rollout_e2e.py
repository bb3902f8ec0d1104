"""A regression caught live with scripted backends: see tests/support/rollout.py."""

from __future__ import annotations

import redis as redis_sync

from monitoring import guards
from tests.support.fake_judge import FakeJudge
from tests.support.rollout import rollback_scenario
from tests.support.servers import ThreadServer


async def test_regression_rolled_back_on_both_replicas_within_a_second(backend_factory, gateway_factory,
                                                                       redis_srv, key_prefix):
    _, s = backend_factory("stable", model="base", text="stable gives the right answer")
    _, c = backend_factory("cand", model="ft", text="candidate gives a worse answer")
    versions = [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}]
    with ThreadServer(FakeJudge("prefer:stable").app) as judge:
        took, event = await rollback_scenario(gateway_factory, versions, judge.url, redis_srv.url, key_prefix,
                                              ["a question"], "writing")
    assert took < 1.0, f"took {took:.2f}s"
    assert event["category"] == "writing" and event["categories"]["writing"]["rejected"]
    assert event["after"]["candidate"] is None and event["before"]["weight_bp"] == 5000
    assert event["by"] == "controller"
    # the gateways counted what the candidate served; the event holds what had been flushed (every second)
    # when the controller decided
    served = guards.parse(redis_sync.Redis.from_url(redis_srv.url).hgetall(
        guards.key(key_prefix, "bot", event["before"]["rollout_id"])))["v2"].served
    assert served["writing"] > 0 and event["exposure"].get("writing", 0) <= served["writing"]
