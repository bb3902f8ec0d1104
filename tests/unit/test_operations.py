import pytest

from router import operations as ops
from router.registry import DAY, reconcile
from router.state import AliasState, RoutingSnapshot, VersionRecord

W = [0, 1, 5, 25, 50, 100]


def snap(*aliases, versions=("v1", "v2", "v3")):
    return RoutingSnapshot(1, {v: VersionRecord(name=v, base_url="http://x/v1", model=v) for v in versions},
                           {a.name: a for a in aliases})


def rolling(**kw):
    return AliasState(name="bot", stable="v1", candidate="v2", weight_bp=100, phase="canary", stage=1, **kw)


def test_promote_next_stage_and_full():
    a = ops.promote(rolling(), W, full=False, now=5)
    assert (a.stage, a.weight_bp, a.phase, a.stage_started_at) == (2, 500, "canary", 5)
    b = ops.promote(rolling(), W, full=True)
    assert (b.stable, b.candidate, b.previous_stable, b.phase) == ("v2", None, "v1", "promoted")
    with pytest.raises(ops.OperationRefused, match="no rollout in progress"):
        ops.promote(AliasState(name="bot", stable="v1"), W, full=False)


def test_pause_resume_abort():
    p = ops.pause(rolling())
    assert p.phase == "paused" and p.paused_from == "canary" and p.weight_bp == 100
    with pytest.raises(ops.OperationRefused, match="already paused"):
        ops.pause(p)
    assert ops.resume(p).phase == "canary"
    with pytest.raises(ops.OperationRefused, match="not paused"):
        ops.resume(rolling())
    ab = ops.abort(rolling())
    assert (ab.phase, ab.candidate, ab.weight_bp) == ("aborted", None, 0)


def test_rollback_during_rollout_after_promotion_and_to_a_version():
    a = ops.rollback(rolling(), snap(rolling()))
    assert (a.phase, a.stable, a.candidate, a.weight_bp) == ("rolled_back", "v1", None, 0)
    with pytest.raises(ops.OperationRefused, match="Nothing to roll back"):
        ops.rollback(a, snap(a))  # the second operator's click: a clear refusal, not a second rollback
    promoted = ops.promote(rolling(), W, full=True)
    back = ops.rollback(promoted, snap(promoted))
    assert (back.stable, back.previous_stable) == ("v1", "v2")
    to = ops.rollback(promoted, snap(promoted), to="v3")
    assert to.stable == "v3"
    with pytest.raises(ops.OperationRefused) as e:
        ops.rollback(promoted, snap(promoted, versions=("v1", "v2")), to="v3")
    assert e.value.status == 404 and "pruned" in str(e.value)
    with pytest.raises(ops.OperationRefused, match="already serves"):
        ops.rollback(back, snap(back), to="v1")


def test_pin_and_unpin():
    a = ops.pin(rolling(), "math", ["math", "coding"])
    assert a.pinned_categories == ["math"]
    with pytest.raises(ops.OperationRefused, match="already pinned"):
        ops.pin(a, "math", ["math"])
    with pytest.raises(ops.OperationRefused) as e:
        ops.pin(a, "cooking", ["math"])
    assert e.value.status == 400
    assert ops.unpin(a, "math").pinned_categories == []
    with pytest.raises(ops.OperationRefused, match="not pinned"):
        ops.unpin(rolling(), "math")


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
