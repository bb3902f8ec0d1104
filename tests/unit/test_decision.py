"""The controller's pure decision: every phase transition and its reason."""

from monitoring.decision import Action, Evidence, Phase, Progress, category_alpha, decide
from monitoring.guards import GuardResult
from monitoring.policy import CategoryPolicy, RolloutPolicy

OK = Evidence(500, rejected=False, cleared=True)
OPEN = Evidence(500, rejected=False, cleared=False)
BAD = Evidence(500, rejected=True, cleared=False)


def policy(**kw):
    return RolloutPolicy(min_bake_s=60, min_pairs_per_stage=100, stage_deadline_s=3600, **kw)


def at(stage=1, phase=Phase.CANARY, started=0.0, pinned=()):
    return Progress(phase, stage, started, 0, tuple(pinned))


def test_promote_when_every_acting_category_cleared_and_minimums_met():
    d = decide(policy(), at(), {"math": OK, "coding": OK}, now=61)
    assert d.action == Action.PROMOTE
    assert decide(policy(), at(), {"math": OK}, now=30).action == Action.NONE  # bake not done
    assert "pairs 50/100" in decide(policy(), at(), {"math": Evidence(50, False, True)}, now=61).reason
    assert decide(policy(), at(stage=5), {"math": OK}, now=61).action == Action.COMPLETE


def test_no_evidence_never_promotes_even_with_zero_minimums():
    p = RolloutPolicy(min_bake_s=0, min_pairs_per_stage=0)
    d = decide(p, at(), {}, now=10)
    assert d.action == Action.NONE and "no judged pairs yet" in d.reason
    assert decide(p, at(), {"math": Evidence(0, False, False)}, now=10).action == Action.NONE


def test_undecided_category_blocks_and_muted_does_not():
    assert decide(policy(), at(), {"math": OK, "coding": OPEN}, now=61).action == Action.NONE
    p = policy(categories={"coding": CategoryPolicy(muted=True)})
    assert decide(p, at(), {"math": OK, "coding": OPEN}, now=61).action == Action.PROMOTE
    assert decide(p, at(), {"math": OK, "coding": BAD}, now=61).action == Action.PROMOTE  # muted: never acts


def test_regression_rolls_back_or_pins():
    d = decide(policy(), at(), {"math": OK, "reasoning": BAD}, now=10)
    assert d.action == Action.ROLLBACK and d.category == "reasoning"
    pin = policy(on_regression="pin_category")
    d = decide(pin, at(), {"math": OK, "reasoning": BAD}, now=10)
    assert d.action == Action.PIN and d.category == "reasoning"
    # once pinned, the category no longer blocks or acts: the others promote
    assert decide(pin, at(pinned=["reasoning"]), {"math": OK, "reasoning": BAD}, now=61).action == Action.PROMOTE
    crit = policy(on_regression="pin_category", categories={"reasoning": CategoryPolicy(critical=True)})
    assert decide(crit, at(), {"reasoning": BAD}, now=10).action == Action.ROLLBACK


def test_must_have_data_waits_and_deadline_goes_inconclusive():
    p = policy(categories={"support": CategoryPolicy(must_have_data=True)})
    d = decide(p, at(), {"math": OK}, now=61)
    assert d.action == Action.NONE and "no data yet: support" in d.reason
    d = decide(p, at(), {"math": OK}, now=3601)
    assert d.action == Action.INCONCLUSIVE and "deadline" in d.reason
    assert decide(p, at(phase=Phase.INCONCLUSIVE), {"math": OK}, now=3700).action == Action.NONE  # holds
    # inconclusive still acts on evidence
    assert decide(p, at(phase=Phase.INCONCLUSIVE), {"math": BAD}, now=3700).action == Action.ROLLBACK


def test_a_tripped_guard_rolls_back_with_its_numbers():
    tripped = GuardResult("error_rate", True, 0.10, 0.07, 0.01, 0.015, 0.04, 200, 2000)
    d = decide(policy(), at(), {"math": OPEN}, now=10, guards={"error_rate": tripped})
    assert d.action == Action.ROLLBACK and "error_rate" in d.reason and "lower bound 0.07" in d.reason
    assert d.details == {"guard": "error_rate"}
    fine = GuardResult("ttft", False, 0.06, 0.04, 0.04, 0.05, 0.095, 500, 500, edge_s=0.25)
    assert decide(policy(), at(), {"math": OPEN}, now=10, guards={"ttft": fine}).action == Action.NONE


def test_final_paused_and_manual_phases_do_nothing():
    for phase in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.PAUSED, Phase.MANUAL):
        assert decide(policy(), at(phase=phase), {"math": BAD}, now=10).action == Action.NONE


def test_alpha_is_split_over_acting_categories_only():
    p = policy(categories={"roleplay": CategoryPolicy(muted=True)})
    assert category_alpha(p, ["math", "coding", "roleplay", "writing"]) == 0.05 / 3


def test_stage_margins_fall_with_exposure_and_never_undercut_a_tolerance():
    p = RolloutPolicy()  # shadow, 1, 5, 25, 50, 100
    margins = [p.stage_margin(i) for i in range(1, 7)]
    assert margins[0] == 0.10 and margins[-2] == margins[-1] == 0.05  # 1% ... 100%, completion
    assert margins == sorted(margins, reverse=True)
    lenient = RolloutPolicy(categories={"roleplay": CategoryPolicy(tolerance=0.08)})
    assert lenient.gate_margin(5, "roleplay") == 0.08 and lenient.gate_margin(5, "math") == 0.05
    explicit = RolloutPolicy(stages=[{"name": "shadow", "weight_pct": 0}, {"name": "half", "weight_pct": 50,
                                                                           "margin": 0.2}])
    assert explicit.stage_margin(1) == 0.2


def test_margins_that_grow_with_exposure_are_refused():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must not grow"):
        RolloutPolicy(stages=[{"name": "shadow", "weight_pct": 0}, {"name": "a", "weight_pct": 1, "margin": 0.05},
                              {"name": "b", "weight_pct": 50, "margin": 0.1}])
