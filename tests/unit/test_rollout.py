import pytest

from router import rollout as ro
from router.registry import DAY, reconcile
from router.state import AliasState, Phase, RoutingSnapshot, VersionRecord

W = [0, 1, 5, 25, 50, 100]
VERSIONS = {v: VersionRecord(name=v, base_url="http://x/v1", model=v) for v in ("v1", "v2", "v3")}


def snap(*aliases, versions=("v1", "v2", "v3")):
    return RoutingSnapshot(1, {v: VERSIONS[v] for v in versions}, {a.name: a for a in aliases})


def ctx(now=5.0, pairs=0, versions=VERSIONS, categories=("math", "coding")):
    return ro.Context(now=now, stage_weights=W, pairs_total=pairs, versions=versions, categories=categories)


def rolling(**kw):
    return AliasState(**{"name": "bot", "stable": "v1", "candidate": "v2", "weight_bp": 100, "phase": Phase.CANARY,
                         "stage": 1, **kw})


def test_start_sets_the_first_stage_clock_counters_and_a_fresh_rollout_id():
    kind, a = ro.start(AliasState(name="bot", stable="v1", rollout_id="old"), "v2", ctx(now=10))
    assert kind == "rollout_started" and a.phase == Phase.SHADOW and a.weight_bp == 0 and a.stage == 0
    assert a.rollout_started_at == a.stage_started_at == 10 and a.rollout_id.startswith("v2@10") and a.revision == 1
    _, again = ro.start(AliasState(name="bot", stable="v1"), "v2", ctx(now=10))
    assert again.rollout_id != a.rollout_id  # a new rollout never reuses another's evidence
    with pytest.raises(ro.Refused, match="in progress"):
        ro.start(a, "v3", ctx())
    with pytest.raises(ro.Refused) as e:
        ro.start(AliasState(name="bot", stable="v1"), "v1", ctx())
    assert e.value.status == 400
    with pytest.raises(ro.Refused) as e:
        ro.start(AliasState(name="bot", stable="v1"), "v9", ctx())
    assert e.value.status == 404


def test_advance_starts_the_stage_clock_and_pair_counter_for_operators_and_controller_alike():
    kind, a = ro.advance(rolling(stage_started_at=1.0, pairs_at_stage_start=3), ctx(now=50, pairs=420))
    assert kind == "promoted" and a.stage == 2 and a.weight_bp == 500
    assert a.stage_started_at == 50 and a.pairs_at_stage_start == 420  # the next minimum counts from here
    kind, b = ro.advance(rolling(), ctx(), full=True)
    assert kind == "completed" and b.phase == Phase.PROMOTED and b.stable == "v2" and b.previous_stable == "v1"
    kind, c = ro.advance(rolling(stage=5, weight_bp=10_000), ctx())
    assert kind == "completed" and c.candidate is None
    with pytest.raises(ro.Refused, match="no rollout in progress"):
        ro.advance(AliasState(name="bot", stable="v1"), ctx())


def test_pause_resume_shifts_the_stage_clock_by_the_pause():
    _, p = ro.pause(rolling(stage_started_at=100.0), ctx(now=200))
    assert p.phase == Phase.PAUSED and p.paused_from == Phase.CANARY
    with pytest.raises(ro.Refused, match="already paused"):
        ro.pause(p, ctx())
    _, r = ro.resume(p, ctx(now=5200))
    assert r.phase == Phase.CANARY and r.stage_started_at == 5100.0  # 100 s of running, as before the pause
    with pytest.raises(ro.Refused, match="not paused"):
        ro.resume(rolling(), ctx())
    _, ab = ro.abort(rolling(), ctx())
    assert ab.phase == Phase.ABORTED and ab.candidate is None and ab.weight_bp == 0


def test_rollback_once_rolled_back_needs_an_explicit_target():
    # v3 rolled out on top of a promoted v2 (v1 before it)
    rolling_v3 = AliasState(name="bot", stable="v2", previous_stable="v1", candidate="v3", weight_bp=500,
                            phase=Phase.CANARY, stage=2)
    _, first = ro.rollback(rolling_v3, ctx())
    assert first.stable == "v2" and first.candidate is None and first.phase == Phase.ROLLED_BACK
    with pytest.raises(ro.Refused, match="Nothing to roll back") as e:
        ro.rollback(first, ctx())  # a second click: refused, v1 does not come back from weeks ago
    assert "--to" in str(e.value)
    _, to_v1 = ro.rollback(first, ctx(), to="v1")
    assert to_v1.stable == "v1" and to_v1.previous_stable == "v2"
    with pytest.raises(ro.Refused, match="already serves"):
        ro.rollback(to_v1, ctx(), to="v1")
    with pytest.raises(ro.Refused) as e:
        ro.rollback(first, ctx(versions={"v2": VERSIONS["v2"]}), to="v1")
    assert e.value.status == 404


def test_rollback_after_a_promotion_restores_the_previous_stable():
    _, promoted = ro.complete(rolling(), ctx())
    _, back = ro.rollback(promoted, ctx())
    assert back.stable == "v1" and back.previous_stable == "v2"
    _, manual = ro.set_split(AliasState(name="bot", stable="v1"), "v2", 10, ctx())
    assert manual.phase == Phase.MANUAL and manual.weight_bp == 1000
    _, out = ro.rollback(manual, ctx())
    assert out.candidate is None  # a split set by hand rolls back like a rollout


def test_a_stale_revision_is_refused_with_what_is_live():
    a = rolling(revision=7)
    ro.check_revision(a, 7)
    ro.check_revision(a, None)
    with pytest.raises(ro.Refused, match="changed since you looked") as e:
        ro.check_revision(a, 6)
    assert e.value.status == 409 and "candidate v2 at 1%" in str(e.value)


def test_every_transition_bumps_the_revision():
    a = rolling(revision=3)
    for step in (lambda a: ro.pause(a, ctx()), lambda a: ro.resume(a, ctx()),
                 lambda a: ro.pin(a, "math", ctx()), lambda a: ro.unpin(a, "math", ctx()),
                 lambda a: ro.mark_inconclusive(a, ctx()), lambda a: ro.advance(a, ctx())):
        _, b = step(a)
        assert b.revision == a.revision + 1
        a = b


def test_pin_and_unpin():
    _, a = ro.pin(rolling(), "math", ctx())
    assert a.pinned_categories == ["math"]
    with pytest.raises(ro.Refused, match="already pinned"):
        ro.pin(a, "math", ctx())
    with pytest.raises(ro.Refused) as e:
        ro.pin(a, "cooking", ctx())
    assert e.value.status == 400
    assert ro.unpin(a, "math", ctx())[1].pinned_categories == []
    with pytest.raises(ro.Refused, match="not pinned"):
        ro.unpin(rolling(), "math", ctx())


def test_retention_keeps_29_days_prunes_after_31_and_restores_used_versions():
    s = snap(AliasState(name="bot", stable="v1"))
    update, prune = reconcile(s, now=0.0, retention_days=30)
    assert {v.name for v in update} == {"v2", "v3"} and not prune  # not in use: retired now
    retired = {v.name: v for v in update}
    s2 = RoutingSnapshot(2, {**s.versions, **retired}, s.aliases)
    assert reconcile(s2, now=29 * DAY, retention_days=30) == ([], [])
    assert reconcile(s2, now=31 * DAY, retention_days=30)[1] == ["v2", "v3"]
    used_again = RoutingSnapshot(3, s2.versions, {"bot": AliasState(name="bot", stable="v3")})
    update, prune = reconcile(used_again, now=31 * DAY, retention_days=30)
    assert [v.name for v in update if v.retired_at is None] == ["v3"] and prune == ["v2"]
