"""The statistics: known values, validity under continuous peeking (simulation), power."""

import math

import numpy as np
import pytest

from monitoring.sequential import (
    Counts,
    analyse,
    cleared,
    confidence_interval,
    log_evalue_worse,
    split_alpha,
)


def test_no_data_means_no_evidence():
    assert float(log_evalue_worse(0, 0, 0, 0.02)) == pytest.approx(0.0)
    assert confidence_interval(Counts(), 0.05) == (-1.0, 1.0)
    s = analyse(Counts(), 0.02, 0.05)
    assert not s.rejected and not s.cleared and s.n == 0


def test_evalue_matches_the_closed_form_for_one_outcome():
    # one loss at m0 = -0.02: each bet b gives 1 + b * (m0 - (-1)) = 1 + 0.98 b
    from monitoring.sequential import _GRID_WEIGHTS, design_bets

    bets = design_bets(0.02, -0.10)
    expected = math.log(float(np.sum(_GRID_WEIGHTS * (1 + 0.98 * bets))))
    assert float(log_evalue_worse(0, 0, 1, 0.02)) == pytest.approx(expected)


def test_order_invariance_counts_are_all_that_matter():
    a = log_evalue_worse(30, 40, 50, 0.02)
    b = log_evalue_worse(np.array([30]), np.array([40]), np.array([50]), 0.02)[0]
    assert float(a) == pytest.approx(float(b))


def test_interval_contains_estimate_shrinks_with_data_and_is_symmetric_for_symmetric_data():
    lo1, hi1 = confidence_interval(Counts(30, 40, 30), 0.05)
    lo2, hi2 = confidence_interval(Counts(3000, 4000, 3000), 0.05)
    assert lo1 < 0 < hi1 and lo2 < 0 < hi2 and hi2 - lo2 < (hi1 - lo1) / 5
    assert lo2 == pytest.approx(-hi2, abs=1e-6)
    lo, hi = confidence_interval(Counts(500, 300, 200), 0.05)
    assert lo < 0.3 < hi


def test_cleared_is_the_lower_bound_event():
    for c in (Counts(600, 400, 400), Counts(5000, 4000, 4000), Counts(9000, 8000, 8000)):
        lo, _ = confidence_interval(c, 0.01)
        assert bool(cleared(c.wins, c.ties, c.losses, 0.02, 0.01)) == (lo > -0.02)


def _simulate(p, runs, max_pairs, every, tol, alpha, seed=0):
    rng = np.random.default_rng(seed)
    steps = rng.multinomial(every, p, size=(runs, max_pairs // every))
    cum = np.cumsum(steps, axis=1)
    rej = log_evalue_worse(cum[..., 0], cum[..., 1], cum[..., 2], tol) >= math.log(1 / alpha)
    first = np.where(rej.any(1), rej.argmax(1), -1)
    return (first >= 0).mean(), (first[first >= 0] + 1) * every


def test_type_one_error_under_continuous_peeking_at_the_boundary():
    # true D exactly -tolerance (the least favourable null), looked at after every pair
    rate, _ = _simulate([0.29, 0.40, 0.31], runs=1000, max_pairs=3000, every=1, tol=0.02, alpha=0.05)
    assert rate <= 0.05
    # the same with a bigger budget and ties: still under alpha
    rate, _ = _simulate([0.45, 0.0, 0.55], runs=1000, max_pairs=2000, every=5, tol=0.10, alpha=0.10, seed=1)
    assert rate <= 0.10


def test_power_at_the_design_effect():
    rate, n = _simulate([0.25, 0.40, 0.35], runs=1000, max_pairs=3000, every=10, tol=0.02, alpha=0.05 / 8)
    assert rate >= 0.95 and np.median(n) <= 1000


def test_analyse_reports_consistent_numbers():
    s = analyse(Counts(100, 200, 300), 0.02, 0.01)
    assert s.estimate == pytest.approx(-200 / 600) and s.rejected and not s.cleared
    assert s.lower <= s.estimate <= s.upper and s.upper < -0.02
    assert s.threshold == pytest.approx(math.log(100))
    undecided = analyse(Counts(30, 40, 30), 0.02, 0.01)
    assert not undecided.rejected and not undecided.cleared and undecided.pairs_needed and undecided.pairs_needed > 0
    assert split_alpha(0.05, 8) == pytest.approx(0.00625)
