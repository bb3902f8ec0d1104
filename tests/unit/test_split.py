import math

from router.split import Arm, bucket, choose_arm, stickiness_key

ORDER = ["header:x-session-id", "user", "conversation"]


def test_share_within_statistical_bounds_over_10k_users():
    n, weight = 10_000, 1_000  # 10%
    hits = sum(choose_arm("bot", "r1", f"user-{i}", weight) == Arm.CANDIDATE for i in range(n))
    sd = math.sqrt(n * 0.1 * 0.9)
    assert abs(hits - 1_000) < 4 * sd, hits


def test_same_key_same_arm_and_weight_extremes():
    for i in range(500):
        k = f"k{i}"
        assert choose_arm("bot", "r", k, 2_500) == choose_arm("bot", "r", k, 2_500)
        assert choose_arm("bot", "r", k, 0) == Arm.STABLE
        assert choose_arm("bot", "r", k, 10_000) == Arm.CANDIDATE


def test_raising_weight_only_moves_users_from_stable_to_candidate():
    users = [f"u{i}" for i in range(5_000)]
    previous = {u: Arm.STABLE for u in users}
    for w in (100, 500, 2_500, 5_000, 10_000):
        now = {u: choose_arm("bot", "r", u, w) for u in users}
        assert not [u for u in users if previous[u] == Arm.CANDIDATE and now[u] == Arm.STABLE]
        previous = now
    assert all(a == Arm.CANDIDATE for a in previous.values())


def test_rollouts_pick_independent_users():
    early_a = {i for i in range(5_000) if bucket("bot", "cand-a@1", f"u{i}") < 500}
    early_b = {i for i in range(5_000) if bucket("bot", "cand-b@2", f"u{i}") < 500}
    assert len(early_a & early_b) < 0.3 * len(early_a)  # ~5% overlap expected by chance


def test_stickiness_key_order():
    body = {"user": "alice", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}]}
    assert stickiness_key(ORDER, {"x-session-id": "S"}, body) == "h:S"
    assert stickiness_key(ORDER, {}, body) == "u:alice"
    conv = stickiness_key(ORDER, {}, {"messages": body["messages"]})
    later = stickiness_key(ORDER, {}, {"messages": [*body["messages"], {"role": "assistant", "content": "a"},
                                                    {"role": "user", "content": "q2"}]})
    assert conv is not None and conv == later  # the conversation keeps its key as it grows
    assert stickiness_key(ORDER, {}, {"prompt": "p"}) is not None
    assert stickiness_key(["user"], {}, {"messages": []}) is None
