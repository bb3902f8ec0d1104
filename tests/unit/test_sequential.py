"""The statistics: known values, the interval is the decisions, validity under continuous peeking
(simulation), power, and the guards' rate intervals."""

import math

import numpy as np
import pytest

from monitoring.sequential import (
    BetGrid,
    CategoryTest,
    Counts,
    analyse,
    bound,
    log_evalue,
    rate_bounds,
    rate_interval,
    split_alpha,
)

ALPHA_K = 0.05 / 8


def make_test(tolerance=0.02, rollback_alpha=ALPHA_K, promotion_alpha=0.05):
    return CategoryTest.design(tolerance, rollback_alpha, promotion_alpha)


def test_no_data_means_no_evidence():
    t = make_test()
    assert float(t.statistic(0, 0, 0)) == pytest.approx(0.0)
    lo, hi = t.interval(0, 0, 0)
    assert (float(lo), float(hi)) == (-1.0, 1.0)
    s = analyse(Counts(), t, 0.05)
    assert not s.rejected and not s.cleared and s.n == 0 and s.pairs_to_gate is None


def test_evalue_matches_the_closed_form_for_one_outcome():
    # one loss, rollback side at m = -0.02: each bet b gives 1 + b * (m - (-1)) = 1 + 0.98 b
    t = make_test()
    expected = math.log(sum(w * (1 + 0.98 * b) for b, w in zip(t.rollback.bets, t.rollback.weights, strict=True)))
    assert float(t.statistic(0, 0, 1)) == pytest.approx(expected)
    grid = BetGrid((0.1,), (1.0,))
    assert float(log_evalue(2, 1, 0, 0.0, grid, +1)) == pytest.approx(2 * math.log(1.1))


def test_order_invariance_counts_are_all_that_matter():
    t = make_test()
    assert float(t.statistic(30, 40, 50)) == pytest.approx(float(t.statistic(np.array([30]), 40, np.array([50]))[0]))


def test_interval_shrinks_with_data_and_covers_the_estimate():
    t = make_test()
    lo1, hi1 = (float(x) for x in t.interval(30, 40, 30))
    lo2, hi2 = (float(x) for x in t.interval(3000, 4000, 3000))
    assert lo1 < 0 < hi1 and lo2 < 0 < hi2 and hi2 - lo2 < (hi1 - lo1) / 5
    lo, hi = (float(x) for x in t.interval(500, 300, 200))
    assert lo < 0.3 < hi


@pytest.mark.parametrize("c", [Counts(600, 400, 400), Counts(5000, 4000, 4000), Counts(9000, 8000, 8000),
                               Counts(300, 400, 500), Counts(2000, 4000, 2600), Counts(100, 200, 300)])
def test_the_interval_is_exactly_the_decisions(c):
    """What is shown and what is decided are one construction: upper < -tolerance is the rollback, and
    lower > -margin is each gate."""
    t = make_test()
    lo, hi = (float(x) for x in t.interval(c.wins, c.ties, c.losses))
    assert bool(t.rejected(c.wins, c.ties, c.losses)) == (hi < -t.tolerance)
    for margin in (0.05, 0.0575, 0.065, 0.0825, 0.10):
        assert bool(t.cleared(c.wins, c.ties, c.losses, margin)) == (lo > -margin)


@pytest.mark.parametrize("copies", [1, 8])  # 40 bounds at once (searched by sixteenths), 320 (by halves)
@pytest.mark.parametrize("direction", [+1, -1])
def test_the_bound_is_the_edge_of_the_rejected_region_within_2e_7_and_on_the_kept_side(direction, copies):
    """The vectorised search against a plain bisection (64 halvings) of the same e-process: the bound is
    never inside the rejected region, and at most 2e-7 wider than the true edge."""
    grid = make_test().rollback
    threshold = math.log(1 / ALPHA_K)
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 3000, size=(40, 3))
    counts[:3] = [(0, 0, 0), (5, 0, 0), (0, 0, 5)]  # no data, and one-sided data: the edge cases
    many = np.tile(counts, (copies, 1))
    found = bound(many[:, 0], many[:, 1], many[:, 2], grid, direction, threshold)[:len(counts)]
    for c, got in zip(counts, found, strict=True):
        def rejected(m, c=c):
            return float(log_evalue(c[0], c[1], c[2], m, grid, direction)) >= threshold
        rej, keep = (-1.0, 1.0) if direction > 0 else (1.0, -1.0)
        if not rejected(rej):
            assert got == rej
            continue
        for _ in range(64):
            mid = (rej + keep) / 2
            rej, keep = (mid, keep) if rejected(mid) else (rej, mid)
        assert not rejected(got)
        assert 0 <= (got - keep) * direction <= 2e-7


def _first_hits(p, runs, max_pairs, every, hit, seed=0):
    rng = np.random.default_rng(seed)
    cum = np.cumsum(rng.multinomial(every, p, size=(runs, max_pairs // every)), axis=1)
    h = hit(cum[..., 0], cum[..., 1], cum[..., 2])
    first = np.where(h.any(1), h.argmax(1), -1)
    return (first >= 0).mean(), (first[first >= 0] + 1) * every


def test_type_one_error_of_the_rollback_test_under_continuous_peeking_at_the_boundary():
    # true D exactly -tolerance (the least favourable null), looked at after every pair
    rate, _ = _first_hits([0.29, 0.40, 0.31], 1000, 3000, 1, make_test(0.02, 0.05).rejected)
    assert rate <= 0.05
    rate, _ = _first_hits([0.45, 0.0, 0.55], 1000, 2000, 5, make_test(0.10, 0.10).rejected, seed=1)
    assert rate <= 0.10


def test_type_one_error_of_a_gate_under_continuous_peeking_at_the_boundary():
    # true D exactly -margin: the gate "no worse than margin" must clear with probability <= alpha
    t = make_test(promotion_alpha=0.05)
    rate, _ = _first_hits([0.275, 0.40, 0.325], 1000, 6000, 1, lambda w, ti, lo: t.cleared(w, ti, lo, 0.05))
    assert rate <= 0.05


def test_power_at_the_design_effect():
    rate, n = _first_hits([0.25, 0.40, 0.35], 1000, 3000, 10, make_test().rejected)
    assert rate >= 0.95 and np.median(n) <= 1000


def test_analyse_reports_consistent_numbers_and_the_pairs_still_needed():
    t = make_test()
    s = analyse(Counts(100, 200, 300), t, 0.05)
    assert s.estimate == pytest.approx(-200 / 600) and s.rejected and not s.cleared and s.status == "regressed"
    assert s.lower <= s.estimate <= s.upper and s.upper < -0.02
    assert s.threshold == pytest.approx(math.log(1 / ALPHA_K)) and s.gate_threshold == pytest.approx(math.log(20))
    good = analyse(Counts(60, 80, 60), t, 0.05)  # as good as stable, 200 pairs: on its way
    assert not good.cleared and good.pairs_to_gate and 1000 < good.pairs_to_gate < 10_000
    later = analyse(Counts(60 * 20, 80 * 20, 60 * 20), t, 0.05)  # the same mix, 20 times more
    assert later.cleared and later.status == "gate met" and later.pairs_to_gate is None
    worse = analyse(Counts(50, 80, 70), t, 0.05)  # estimate -0.10: below the gate, never clears
    assert worse.pairs_to_gate is None and worse.pairs_to_rollback and worse.pairs_to_rollback > 0
    assert split_alpha(0.05, 8) == pytest.approx(0.00625)


def test_rate_interval_covers_and_is_anytime_valid():
    lo, hi = rate_interval(10, 1000, 0.01)
    assert lo < 0.01 < hi and hi < 0.05
    assert rate_interval(0, 0, 0.01) == (0.0, 1.0)
    lo, hi = rate_interval(0, 500, 0.01)
    assert lo == 0.0 and 0 < hi < 0.035
    lo, hi = rate_interval(20, 100, 0.01)
    assert 0 < lo < 0.2 < hi < 0.45
    # coverage under peeking after every request, at p = 0.05: 1,000 runs of 400 requests
    rng = np.random.default_rng(2)
    k = np.cumsum(rng.random((1000, 400)) < 0.05, axis=1)
    lo, hi = rate_bounds(k, np.arange(1, 401)[None, :], 0.05)
    assert ((lo > 0.05) | (hi < 0.05)).any(axis=1).mean() <= 0.05
