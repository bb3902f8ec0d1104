"""The preflight verdict: per category, the candidate's outcomes against stable over a suite (judged
pairs or programmatic checks, both X in {+1, 0, -1}), their estimate and anytime-valid interval, the
threshold and pass/fail. Pure.

The interval is the rollout's own construction (monitoring/sequential.py through analysis.category_stats),
with the policy's alpha split over the suite's categories for the upper end, as the rollback test splits
it: a suite is one more look at the same quantity the rollout then watches live. Its bets are sized for
`preflight.design_effect` (tens of items can show a large regression, not a 2-point one).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from monitoring.analysis import category_stats
from monitoring.policy import RolloutPolicy
from monitoring.sequential import Counts, split_alpha


class CategoryVerdict(BaseModel):
    category: str
    n: int
    wins: int
    ties: int
    losses: int
    estimate: float  # P(win) - P(loss) over the suite's items
    lower: float
    upper: float
    threshold: float  # a drop larger than this fails
    established: bool  # the breach is shown: upper < -threshold
    passed: bool
    graded: int = 0  # items decided by a programmatic check (the rest by the judge)
    candidate_passed: int = 0  # of the graded items, answers that passed the check
    stable_passed: int = 0
    errors: int = 0  # items that could not be scored (a backend or the judge failed)


class PreflightVerdict(BaseModel):
    passed: bool
    failed: list[str]
    categories: dict[str, CategoryVerdict]


def verdict(policy: RolloutPolicy, counts: Mapping[str, Counts], graded: Mapping[str, tuple[int, int, int]],
            errors: Mapping[str, int], categories: list[str]) -> PreflightVerdict:
    """`counts`: outcomes per category; `graded`: per category (graded items, candidate passes, stable
    passes); `errors`: items not scored; `categories`: the suite's (a category with no scored item fails)."""
    alpha = split_alpha(policy.alpha, len(categories))
    out: dict[str, CategoryVerdict] = {}
    for cat in categories:
        c = counts.get(cat, Counts())
        threshold = policy.preflight_threshold(cat)
        effect = policy.preflight.design_effect
        s = category_stats(c.wins, c.ties, c.losses, threshold, alpha, policy.alpha, effect, -effect, threshold)
        established = c.n > 0 and s.upper < -threshold
        breach = established if policy.preflight.fail_on == "established" else s.estimate < -threshold
        g = graded.get(cat, (0, 0, 0))
        out[cat] = CategoryVerdict(
            category=cat, n=c.n, wins=c.wins, ties=c.ties, losses=c.losses, estimate=s.estimate, lower=s.lower,
            upper=s.upper, threshold=threshold, established=established,
            passed=c.n >= policy.preflight.min_items and not breach, graded=g[0], candidate_passed=g[1],
            stable_passed=g[2], errors=errors.get(cat, 0))
    failed = [c for c, v in out.items() if not v.passed]
    return PreflightVerdict(passed=not failed, failed=failed, categories=out)
