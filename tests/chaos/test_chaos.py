"""Fault injection in CI (issue 12): the run of bench/chaos.py, shortened. Under load, kill -9 and restart, one
at a time, Redis (down 5 s), a judge worker, a gateway worker, the controller leader, the stable and the
candidate backend. No new request may fail except those routed to a dead stable; no sample accepted for
judging may be lost or counted twice; each fault recovers.
Everything at its defaults: a sample whose backend is down for 2 s is judged by the worker's in-process
retries (about 15 s of backoff), not left for the 60 s claim."""

from __future__ import annotations

from tests.support.chaos import Chaos, faults


async def test_every_fault_under_load_fails_no_new_request_and_loses_no_sample(tmp_path):
    phases = {}
    async with Chaos(tmp_path, clients=16, users=1000) as chaos:
        for name, fault in faults(redis_down_s=5.0, down_s=2.0):
            phases[name] = p = await chaos.run_phase(name, fault, before_s=4, after_s=4, drain_s=90)
            assert p.requests > 50, p
            assert p.lost == 0 and p.double_counted == 0, p
            assert p.judged + p.dead == p.accepted > 0, p
            if name == "stable backend":  # the one fault that may fail new requests: those routed to stable
                assert p.failed_new == p.failed_new_stable, p
            else:
                assert p.failed_new == 0, p
    redis = phases["redis"]
    assert redis.down_s >= 5 and redis.accepted_while_down > 0 and redis.dead == 0, redis  # at the default budget
    assert "outage samples judged after restart" in redis.recovery
    assert "leader re-elected" in phases["controller leader"].recovery
    assert "replacement worker up" in phases["gateway worker"].recovery
    assert phases["candidate backend"].rollout.startswith("rolled_back by controller"), phases["candidate backend"]
    for name in ("redis", "judge worker", "gateway worker", "controller leader", "stable backend"):
        assert phases[name].rollout == "unchanged", phases[name]
