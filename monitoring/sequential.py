"""Always-valid sequential statistics on paired judge outcomes. Pure (numpy), no I/O.

Each judged pair gives X in {+1 (candidate wins), 0 (tie), -1 (loss)}; the quantity of interest is
D = E[X] = P(win) - P(loss). Per category:

- Rollback test of H0: "D >= -tolerance" (the candidate is not worse than stable by more than the
  tolerance). The test statistic is a betting (e-)process
      K_n = sum_j w_j * prod_i (1 + l_j * (m0 - X_i)),     m0 = -tolerance,
  a mixture over a fixed grid of bets l_j. Under H0, E[1 + l (m0 - X)] <= 1, so K_n is a nonnegative
  supermartingale and, by Ville's inequality, P(K_n ever >= 1/alpha) <= alpha: valid however often it is
  looked at (every pair, every 10 pairs, every few seconds), with no distributional assumption beyond
  X in [-1, 1]. Because the bets are fixed, K_n depends only on the counts (wins, ties, losses), so it
  is computed from order-invariant sums that any number of workers add to.
- Anytime-valid confidence interval for D: the same construction inverted over m (two-sided, alpha/2
  per side); promotion needs its lower bound above -tolerance.
- The grid's weight sits mostly on the bet that grows fastest at a design effect (the regression one
  most wants to catch quickly, default D = -0.10), with the rest spread to keep power at other effects.

References: Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting" (JRSS-B
2023); Howard et al., "Time-uniform, nonparametric, nonasymptotic confidence sequences" (AoS 2021);
Johari et al., "Always valid inference" (mSPRT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

ASSUMED_VARIANCE = 0.6  # E[(X - m0)^2] with ~40% ties; only shapes the bets (power), never validity
_GRID_MULTIPLIERS = np.array([0.25, 0.5, 1.0, 2.0])
_GRID_WEIGHTS = np.array([0.1, 0.1, 0.7, 0.1])
# fractions of the largest safe bet; dense at small bets, where "within a few points" is decided
_CI_BETS = np.array([0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.4, 0.8])
_CI_WEIGHTS = np.full(len(_CI_BETS), 1 / len(_CI_BETS))


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

    @property
    def variance(self) -> float:
        if not self.n:
            return ASSUMED_VARIANCE
        return (self.wins + self.losses) / self.n - self.mean ** 2


def _log_bet_growth(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, m: ArrayLike,
                    bets: NDArray[np.float64], direction: int) -> NDArray[np.float64]:
    """log prod_i (1 + b * direction * (X_i - m)) for each bet b (last axis), from counts."""
    w, t, lo, mm = (np.asarray(a, dtype=np.float64)[..., None] for a in (wins, ties, losses, m))
    d = float(direction)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (w * np.log1p(bets * d * (1 - mm)) + t * np.log1p(bets * d * (0 - mm))
               + lo * np.log1p(bets * d * (-1 - mm)))
    return np.asarray(np.nan_to_num(out, nan=-np.inf), dtype=np.float64)


def _logsumexp(a: NDArray[np.float64], log_w: NDArray[np.float64]) -> NDArray[np.float64]:
    x = a + log_w
    mx = np.max(x, axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return np.asarray(np.squeeze(mx, -1) + np.log(np.sum(np.exp(x - mx), axis=-1)), dtype=np.float64)


def design_bets(tolerance: float, design_effect: float) -> NDArray[np.float64]:
    """The bet grid for the rollback test: centred on the bet that grows fastest at the design effect."""
    gap = max(-tolerance - design_effect, 0.01)
    safe = 1 / (1 + tolerance)  # 1 + b (m0 - X) > 0 for X = +1
    return np.asarray(np.clip(gap / ASSUMED_VARIANCE * _GRID_MULTIPLIERS, 1e-4, 0.95 * safe), dtype=np.float64)


def log_evalue_worse(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, tolerance: float,
                     design_effect: float = -0.10) -> NDArray[np.float64]:
    """log K_n for H0: D >= -tolerance (large: evidence the candidate is worse than tolerated).
    Vectorised over the counts' shapes."""
    bets = design_bets(tolerance, design_effect)
    growth = _log_bet_growth(wins, ties, losses, -tolerance, bets, direction=-1)
    return _logsumexp(growth, np.log(_GRID_WEIGHTS))


def log_evalue_side(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, m: float,
                    direction: int) -> NDArray[np.float64]:
    """Evidence that D > m (direction +1) or D < m (direction -1), mixing over generic bets.
    Vectorised over the counts' shapes."""
    safe = 1 / (1 + m) if direction > 0 else 1 / (1 - m)
    bets = np.minimum(_CI_BETS * safe, 0.99 * safe)
    return _logsumexp(_log_bet_growth(wins, ties, losses, m, bets, direction), np.log(_CI_WEIGHTS))


def _log_evalue_side(c: Counts, m: float, direction: int) -> float:
    return float(log_evalue_side(c.wins, c.ties, c.losses, m, direction))


def cleared(wins: ArrayLike, ties: ArrayLike, losses: ArrayLike, tolerance: float,
            alpha: float) -> NDArray[np.bool_]:
    """Lower confidence bound above -tolerance, tested directly at m = -tolerance (the same event as
    `confidence_interval(...)[0] > -tolerance`, without the search). Vectorised."""
    return np.asarray(log_evalue_side(wins, ties, losses, -tolerance, +1) >= math.log(2 / alpha))


def confidence_interval(c: Counts, alpha: float, iters: int = 40) -> tuple[float, float]:
    """Anytime-valid (1 - alpha) interval for D: every m whose two one-sided e-values stay below 2/alpha."""
    if c.n == 0:
        return -1.0, 1.0
    threshold = math.log(2 / alpha)

    def bound(direction: int) -> float:
        # the side's e-value falls as m moves towards the data; find where it crosses the threshold
        lo, hi = (-1.0, c.mean) if direction > 0 else (c.mean, 1.0)
        far = lo if direction > 0 else hi
        if _log_evalue_side(c, far + (1e-9 if direction > 0 else -1e-9), direction) < threshold:
            return far
        for _ in range(iters):
            mid = (lo + hi) / 2
            rejected = _log_evalue_side(c, mid, direction) >= threshold
            if direction > 0:
                lo, hi = (mid, hi) if rejected else (lo, mid)
            else:
                lo, hi = (lo, mid) if rejected else (mid, hi)
        return lo if direction > 0 else hi

    return bound(+1), bound(-1)


@dataclass(frozen=True)
class CategoryStats:
    """What the controller (and the dashboards) know about one category at one moment."""

    n: int
    estimate: float  # observed mean of X: P(win) - P(loss)
    lower: float
    upper: float
    log_evalue: float  # the rollback test's statistic
    threshold: float  # log(1 / alpha_k): reject (roll back) at or above it
    rejected: bool  # "worse than the tolerance" established
    cleared: bool  # lower bound above -tolerance
    pairs_needed: int | None  # rough estimate of further pairs until one of the two happens


def analyse(c: Counts, tolerance: float, alpha: float, design_effect: float = -0.10) -> CategoryStats:
    log_e = float(log_evalue_worse(c.wins, c.ties, c.losses, tolerance, design_effect))
    threshold = math.log(1 / alpha)
    lower, upper = confidence_interval(c, alpha)
    rejected = log_e >= threshold
    ok = bool(cleared(c.wins, c.ties, c.losses, tolerance, alpha))
    return CategoryStats(c.n, c.mean, lower, upper, log_e, threshold, rejected, ok,
                         None if rejected or ok else pairs_needed(c, tolerance, alpha))


def pairs_needed(c: Counts, tolerance: float, alpha: float) -> int | None:
    """If the current estimate held, about how many more pairs until a decision (normal approximation of
    the crossing time, doubled for the price of looking continuously); None when too close to call."""
    gap = abs(c.mean + tolerance) if c.n else abs(-0.10 + tolerance)
    if gap < 1e-3:
        return None
    total = math.ceil(2 * max(c.variance, 0.05) * math.log(2 / alpha) / gap ** 2)
    return max(total - c.n, 1)


def split_alpha(alpha: float, categories: int) -> float:
    """Bonferroni across the categories that can act: P(any false rollback) <= alpha."""
    return alpha / max(categories, 1)
