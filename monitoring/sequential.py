"""Always-valid sequential statistics on counts. Pure (numpy), no I/O.

Each judged pair gives X in {+1 (candidate wins), 0 (tie), -1 (loss)}; the quantity of interest is
D = E[X] = P(win) - P(loss). A guard's rate (errors, slow answers) is the same machinery on X in {1, 0}.

For a mean m, two betting e-processes (Waudby-Smith & Ramdas, JRSS-B 2023), each a mixture over a fixed
grid of bets b_j with weights w_j:

    below(m) = sum_j w_j prod_i (1 + b_j (m - X_i))     evidence that D < m
    above(m) = sum_j w_j prod_i (1 + b_j (X_i - m))     evidence that D > m

Under D >= m (resp. D <= m) every factor has expectation at most 1, so the process is a nonnegative
supermartingale and, by Ville's inequality, reaches 1/alpha with probability at most alpha, however often
it is looked at. Because the bets are fixed, the processes depend only on the counts (wins, ties, losses):
any number of workers add to order-invariant sums. With fixed bets, below(m) grows and above(m) shrinks
with m, so inverting them gives an anytime-valid interval [lower, upper] whose ends are exactly the
decisions: `upper < -tolerance` is the rollback test rejecting "D >= -tolerance", and `lower > -margin`
is a promotion gate. What is shown and what is decided are one construction.

The bets only shape power (how soon a decision comes), never validity. They are chosen per rollout from
the policy, before any data: the rollback side is tuned to catch the design effect (default D = -0.10)
fastest; the promotion side to clear the final margin fastest for a candidate as good as stable.

References: Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting" (2023);
Howard et al., "Time-uniform, nonparametric, nonasymptotic confidence sequences" (AoS 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

ASSUMED_VARIANCE = 0.6  # E[(X - m)^2] with ~40% ties; only shapes the bets (power), never validity
MAX_BET = 0.45  # keeps every factor positive for any m in [-1, 1] (needs b < 1/2)
_ROLLBACK_GRID = ((0.25, 0.1), (0.5, 0.1), (1.0, 0.7), (2.0, 0.1))  # (multiple of the design bet, weight)
_PROMOTION_GRID = ((0.4, 0.2), (0.65, 0.5), (1.0, 0.2), (1.6, 0.1))  # tuned: bench/rollback_evidence.sh
# a bound's search narrows its bracket to 2 / 2**24 (about 1.2e-7) on [-1, 1]. A few bounds at a time (the
# controller's guards: up to 45 rates) cost numpy's per-call overhead more than arithmetic, so each step
# splits the bracket in 16 (6 steps, not 24 halvings): a guard evaluation went from about 100 to 40 ms
# (bench/guard_evaluation.py). Many at a time (simulations) are arithmetic, where halving does the least.
_SEARCH_BITS = 24
_FEW_BOUNDS = 256


Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Counts:
    wins: int = 0
    ties: int = 0
    losses: int = 0

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def mean(self) -> float:
        return (self.wins - self.losses) / self.n if self.n else 0.0


@dataclass(frozen=True)
class BetGrid:
    bets: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def around(cls, design_bet: float, grid: tuple[tuple[float, float], ...]) -> BetGrid:
        bets = tuple(float(np.clip(design_bet * k, 1e-4, MAX_BET)) for k, _ in grid)
        return cls(bets, tuple(w for _, w in grid))


def log_growth(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, m: ArrayLike, bets: Floats,
               direction: int) -> Floats:
    """log prod_i (1 + b * direction * (X_i - m)) for each bet b (last axis), from counts."""
    w, t, lo, mm = (np.asarray(a, dtype=np.float64)[..., None] for a in (wins, ties, losses, m))
    d = float(direction)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (w * np.log1p(bets * d * (1 - mm)) + t * np.log1p(bets * d * (0 - mm))
               + lo * np.log1p(bets * d * (-1 - mm)))
    return np.asarray(np.nan_to_num(out, nan=-np.inf), dtype=np.float64)


def _logsumexp(x: Floats) -> Floats:
    mx = np.max(x, axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return np.asarray(np.squeeze(mx, -1) + np.log(np.sum(np.exp(x - mx), axis=-1)), dtype=np.float64)


def log_evalue(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, m: ArrayLike, grid: BetGrid,
               direction: int) -> Floats:
    """log of the mixture e-process: evidence that D > m (direction +1) or D < m (-1). Vectorised."""
    growth = log_growth(wins, ties, losses, m, np.asarray(grid.bets), direction)
    return _logsumexp(growth + np.log(np.asarray(grid.weights)))


def bound(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, grid: BetGrid, direction: int,
          threshold: float) -> Floats:
    """The end of the anytime-valid interval on one side (vectorised search): for direction +1 the
    lower bound, the smallest m whose `above(m)` stays below the threshold; for -1 the upper bound."""
    w, t, lo = (np.asarray(a, dtype=np.float64) for a in (wins, ties, losses))
    shape = np.broadcast(w, t, lo).shape
    # rejected side and kept side of the bracket: above(m) shrinks with m, below(m) grows with m
    rej = np.full(shape, -1.0 if direction > 0 else 1.0)
    keep = np.full(shape, 1.0 if direction > 0 else -1.0)
    edge = log_evalue(w, t, lo, rej, grid, direction) < threshold  # nothing rejected: the bound is the edge
    w, t, lo = (np.broadcast_to(a, shape)[..., None] for a in (w, t, lo))
    bits = 4 if rej.size <= _FEW_BOUNDS else 1
    inside = np.arange(1, 2**bits) / 2**bits
    for _ in range(_SEARCH_BITS // bits):
        points = np.concatenate([rej[..., None], rej[..., None] + (keep - rej)[..., None] * inside,
                                 keep[..., None]], axis=-1)
        # rejection is monotone along the points: the first `hits` interior points are rejected
        hits = (log_evalue(w, t, lo, points[..., 1:-1], grid, direction) >= threshold).sum(axis=-1)[..., None]
        rej = np.take_along_axis(points, hits, -1)[..., 0]
        keep = np.take_along_axis(points, hits + 1, -1)[..., 0]
    return np.where(edge, -1.0 if direction > 0 else 1.0, keep)


@dataclass(frozen=True)
class CategoryTest:
    """One category's tests in one rollout: the rollback side at -tolerance, the promotion gates, and the
    interval they make.

    The two sides spend different error budgets. A rollback acts on one category alone, so the rollout's
    alpha is split over the categories (`rollback_alpha` = alpha / K): P(any false rollback) <= alpha.
    A promotion needs every category to clear its gate, so a false promotion needs the worst category's
    bound to be wrong: an intersection-union test (Berger 1982), level alpha with no split
    (`promotion_alpha` = alpha), uniformly over time and over all the stages' margins at once.
    """

    tolerance: float
    rollback_alpha: float
    promotion_alpha: float
    rollback: BetGrid
    promotion: BetGrid

    @classmethod
    def design(cls, tolerance: float, rollback_alpha: float, promotion_alpha: float,
               design_effect: float = -0.10, final_margin: float = 0.05) -> CategoryTest:
        """Bets that grow fastest where it matters: at the design effect for the rollback side (Kelly:
        gap / variance), and for a candidate as good as stable against the final margin on the promotion
        side."""
        rollback_gap = max(-tolerance - design_effect, 0.01)
        promotion_gap = max(final_margin, 0.01)
        return cls(tolerance, rollback_alpha, promotion_alpha,
                   BetGrid.around(rollback_gap / ASSUMED_VARIANCE, _ROLLBACK_GRID),
                   BetGrid.around(promotion_gap / ASSUMED_VARIANCE, _PROMOTION_GRID))

    @property
    def threshold(self) -> float:
        """The rollback test's: log(1 / rollback_alpha)."""
        return math.log(1 / self.rollback_alpha)

    @property
    def gate_threshold(self) -> float:
        return math.log(1 / self.promotion_alpha)

    def statistic(self, wins: ArrayLike, ties: ArrayLike, losses: ArrayLike) -> Floats:
        """log e-value of 'worse than the tolerance' (the rollback test's statistic)."""
        return log_evalue(wins, ties, losses, -self.tolerance, self.rollback, -1)

    def rejected(self, wins: ArrayLike, ties: ArrayLike, losses: ArrayLike) -> NDArray[np.bool_]:
        """Worse than the tolerance, established (= upper bound below -tolerance)."""
        return np.asarray(self.statistic(wins, ties, losses) >= self.threshold)

    def gate(self, wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, margin: ArrayLike) -> Floats:
        """log e-value of 'no worse than `margin`' (= lower bound above -margin once at the threshold)."""
        return log_evalue(wins, ties, losses, -np.asarray(margin, dtype=np.float64), self.promotion, +1)

    def cleared(self, wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, margin: ArrayLike) -> NDArray[np.bool_]:
        return np.asarray(self.gate(wins, ties, losses, margin) >= self.gate_threshold)

    def interval(self, wins: ArrayLike, ties: ArrayLike, losses: ArrayLike) -> tuple[Floats, Floats]:
        """[lower, upper]: lower at the promotion budget, upper at the rollback budget (each end is
        exactly its decision), so it covers D with probability at least 1 - promotion_alpha -
        rollback_alpha, at all times."""
        return (bound(wins, ties, losses, self.promotion, +1, self.gate_threshold),
                bound(wins, ties, losses, self.rollback, -1, self.threshold))

    def pairs_to_gate(self, c: Counts, margin: float) -> int | None:
        """If the rest of the pairs came in the proportions seen so far, how many more until the gate
        clears; None when the estimate is not above -margin (it would not clear)."""
        return _pairs_to(c, self.promotion, -margin, +1, self.gate_threshold)

    def pairs_to_rollback(self, c: Counts) -> int | None:
        return _pairs_to(c, self.rollback, -self.tolerance, -1, self.threshold)


def _pairs_to(c: Counts, grid: BetGrid, m: float, direction: int, threshold: float) -> int | None:
    if c.n == 0:
        return None
    bets = np.asarray(grid.bets)
    now = log_growth(c.wins, c.ties, c.losses, m, bets, direction) + np.log(np.asarray(grid.weights))
    if np.logaddexp.reduce(now) >= threshold:
        return 0
    per_pair = log_growth(c.wins / c.n, c.ties / c.n, c.losses / c.n, m, bets, direction)
    # the mixture is at least each weighted bet: the first bet to reach the threshold bounds the wait
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(per_pair > 1e-9, (threshold - now) / per_pair, np.inf)
    best = float(np.min(need))
    return math.ceil(best) if math.isfinite(best) else None


@dataclass(frozen=True)
class CategoryStats:
    """What the controller (and every view of it) knows about one category at one moment."""

    n: int
    wins: int
    ties: int
    losses: int
    estimate: float  # observed mean of X: P(win) - P(loss)
    lower: float  # anytime-valid bounds: the promotion gates and the rollback test read these
    upper: float
    log_evalue: float  # the rollback test's statistic
    threshold: float  # log(1 / alpha_k): roll back at or above it
    gate_threshold: float  # log(1 / alpha): a gate clears when its e-value reaches it
    tolerance: float
    rejected: bool  # "worse than the tolerance" established (upper < -tolerance)
    gate_margin: float  # what the next stage needs: lower > -gate_margin
    cleared: bool  # the next stage's gate is met
    pairs_to_gate: int | None  # further pairs until the gate clears at the current estimate (None: not on track)
    pairs_to_rollback: int | None  # further pairs until a rollback at the current estimate (None: not on track)

    @property
    def status(self) -> str:
        return "regressed" if self.rejected else "gate met" if self.cleared else "collecting"


def analyse(c: Counts, test: CategoryTest, gate_margin: float) -> CategoryStats:
    lower, upper = test.interval(c.wins, c.ties, c.losses)
    rejected = bool(test.rejected(c.wins, c.ties, c.losses))
    cleared = bool(test.cleared(c.wins, c.ties, c.losses, gate_margin))
    return CategoryStats(
        c.n, c.wins, c.ties, c.losses, c.mean, float(lower), float(upper),
        float(test.statistic(c.wins, c.ties, c.losses)), test.threshold, test.gate_threshold, test.tolerance,
        rejected, gate_margin,
        cleared, None if rejected or cleared else test.pairs_to_gate(c, gate_margin),
        None if rejected else test.pairs_to_rollback(c))


def split_alpha(alpha: float, categories: int) -> float:
    """Bonferroni across the categories that can act: P(any false decision on one side) <= alpha."""
    return alpha / max(categories, 1)


# -- rates (guards) -------------------------------------------------------------------------------------

_RATE_GRID = BetGrid((0.02, 0.05, 0.1, 0.2, 0.3, 0.45), (1 / 6,) * 6)  # generic: guards look at any rate


def rate_bounds(k: ArrayLike, n: ArrayLike, alpha: float) -> tuple[Floats, Floats]:
    """Anytime-valid intervals (vectorised) for rates from k events in n trials: the same betting
    construction on X in {1, 0} (k "wins", n - k "ties"), alpha/2 on each side."""
    kk, nn = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    threshold = math.log(2 / alpha)
    lower = bound(kk, nn - kk, 0, _RATE_GRID, +1, threshold)
    upper = bound(kk, nn - kk, 0, _RATE_GRID, -1, threshold)
    return np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)


def rate_interval(k: int, n: int, alpha: float) -> tuple[float, float]:
    lo, hi = rate_bounds(k, n, alpha)
    return float(lo), float(hi)
