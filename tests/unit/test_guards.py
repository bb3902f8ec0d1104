"""Operational guards compare the versions with anytime-valid bounds: they trip on evidence, not on noise
or a bucket edge, and say the numbers."""

from monitoring import guards as g
from monitoring.policy import Guards


def counts(requests=0, errors=0, empty=0, ttft=None, latency=None):
    return g.VersionCounts(requests, errors, empty, dict(ttft or {}), dict(latency or {}))


def ttft_hist(samples_ms: dict[float, int]) -> dict[int, int]:
    """Bucket counts for `n` requests at each TTFT (ms)."""
    from bisect import bisect_left

    out: dict[int, int] = {}
    for ms, n in samples_ms.items():
        i = bisect_left(g.TTFT_EDGES, ms / 1000)
        out[i] = out.get(i, 0) + n
    return out


def test_ttft_one_bucket_difference_in_the_tail_does_not_trip():
    # the reported case: 96% vs 94% of requests under 250 ms (the old check read 0.5 s vs a 0.425 s limit)
    stable = counts(5000, ttft=ttft_hist({120: 4800, 300: 200}))
    cand = counts(5000, ttft=ttft_hist({120: 4700, 300: 300}))
    r = g.evaluate(Guards(), {"v1": stable, "v2": cand}, "v1", "v2")["ttft"]
    assert not r.tripped and r.candidate_lower <= r.limit


def test_ttft_real_slowdown_trips_and_says_the_numbers():
    stable = counts(2000, ttft=ttft_hist({120: 1900, 300: 100}))
    cand = counts(400, ttft=ttft_hist({300: 300, 600: 100}))  # most answers now start 2-5x later
    r = g.evaluate(Guards(), {"v1": stable, "v2": cand}, "v1", "v2")["ttft"]
    assert r.tripped and r.edge_s is not None and r.candidate > r.stable
    assert "share slower than" in r.detail and "lower bound" in r.detail


def test_error_rate_trips_on_evidence_only():
    few = g.evaluate(Guards(), {"v1": counts(2000, 20), "v2": counts(60, 6)}, "v1", "v2")
    assert not few["error_rate"].tripped  # 10% of 60 is not yet evidence against 1% + slack
    many = g.evaluate(Guards(), {"v1": counts(2000, 20), "v2": counts(600, 60)}, "v1", "v2")
    assert many["error_rate"].tripped
    # below min_requests nothing is evaluated at all
    assert "error_rate" not in g.evaluate(Guards(), {"v1": counts(2000), "v2": counts(10, 10)}, "v1", "v2")


def test_a_candidate_as_good_as_stable_never_trips_with_lots_of_data():
    same = {"v1": counts(100_000, 1000, 500, ttft_hist({100: 90_000, 400: 10_000})),
            "v2": counts(100_000, 1050, 520, ttft_hist({100: 89_800, 400: 10_200}))}
    assert not any(r.tripped for r in g.evaluate(Guards(), same, "v1", "v2").values())


def test_the_redis_hash_parses_into_counts_and_exposure():
    raw = {b"v1:requests": b"10", b"v1:errors": b"1", b"v2:ttft:3": b"4", b"v2:lat:7": b"2",
           b"v2:cat:math": b"5", b"v2:requests": b"6"}
    c = g.parse(raw)
    assert c["v1"].requests == 10 and c["v1"].errors == 1
    assert c["v2"].ttft == {3: 4} and c["v2"].latency == {7: 2} and c["v2"].served == {"math": 5}
    assert g.quantile({0: 90, 5: 10}, g.TTFT_EDGES, 0.95) == g.TTFT_EDGES[5]


def test_a_candidate_that_fails_after_a_long_good_run_trips_on_the_recent_window():
    # hours of good service: 200k requests at stable's 1%; then 5 minutes of 50% errors
    whole = {"v1": counts(400_000, 4000), "v2": counts(200_600, 2000 + 300)}
    recent = {"v1": counts(1200, 12), "v2": counts(600, 300)}
    assert not g.evaluate(Guards(), whole, "v1", "v2")["error_rate"].tripped  # the whole rollout hides it
    r = g.evaluate(Guards(), whole, "v1", "v2", recent)["error_rate"]
    assert r.tripped and r.window_minutes == 5 and "over the last 5 min" in r.detail
    # the same window with the candidate as good as stable: nothing trips, the whole rollout is shown
    calm = g.evaluate(Guards(), whole, "v1", "v2", {"v1": counts(1200, 12), "v2": counts(600, 7)})["error_rate"]
    assert not calm.tripped and calm.window_minutes is None


def test_window_counters_are_per_minute_and_summed_over_the_window():
    keys = g.window_keys("p", "bot", "r1", now=60 * 1000 + 30, minutes=5)
    assert keys[0] == "p:guardwin:bot:r1:995" and keys[-1] == "p:guardwin:bot:r1:1000" and len(keys) == 6
    merged = g.merge([{b"v2:requests": b"10", b"v2:errors": b"2", b"v2:ttft:3": b"9"}, {b"v2:requests": b"5"}, {}])
    assert (merged["v2"].requests, merged["v2"].errors, merged["v2"].ttft) == (15, 2, {})


async def test_counters_write_the_window_with_a_short_ttl(redis_srv, key_prefix):
    import time

    from router.store import connect

    r = connect(redis_srv.url)
    try:
        counters = g.GuardCounters(r, key_prefix)
        counters.record("bot", "r1", "v2", error=True, empty=False, ttft_s=None)
        await counters.flush()
        wk = g.window_key(key_prefix, "bot", "r1", int(time.time() // 60))
        assert await r.hgetall(wk) == {b"v2:requests": b"1", b"v2:errors": b"1"}
        assert 0 < await r.ttl(wk) <= g.WINDOW_TTL_S < await r.ttl(g.key(key_prefix, "bot", "r1"))
    finally:
        await r.aclose()
