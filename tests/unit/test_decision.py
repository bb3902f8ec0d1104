"""The controller's pure decision: every phase transition and its reason."""

from monitoring.decision import Action, Evidence, GuardReading, Phase, Progress, category_alpha, decide
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


def test_guards_trip_relative_to_stable():
    g = {"error_rate": GuardReading(candidate=0.10, stable=0.01, candidate_requests=200, stable_requests=2000)}
    d = decide(policy(), at(), {"math": OPEN}, now=10, guards=g)
    assert d.action == Action.ROLLBACK and "error_rate" in d.reason
    few = {"error_rate": GuardReading(0.10, 0.01, candidate_requests=5, stable_requests=2000)}
    assert decide(policy(), at(), {"math": OPEN}, now=10, guards=few).action == Action.NONE  # too little data
    fine = {"ttft_p95_s": GuardReading(0.30, 0.25, 500, 500)}
    assert decide(policy(), at(), {"math": OPEN}, now=10, guards=fine).action == Action.NONE


def test_final_and_paused_phases_do_nothing():
    for phase in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.PAUSED):
        assert decide(policy(), at(phase=phase), {"math": BAD}, now=10).action == Action.NONE


def test_alpha_is_split_over_acting_categories_only():
    p = policy(categories={"roleplay": CategoryPolicy(muted=True)})
    assert category_alpha(p, ["math", "coding", "roleplay", "writing"]) == 0.05 / 3
