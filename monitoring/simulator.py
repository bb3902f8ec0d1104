"""The policy simulator behind `cliffguard simulate`: synthetic paired outcomes driven through the real
statistics (monitoring.sequential) and the real controller decision (monitoring.decision.decide).

Each category receives judged pairs at `pairs_per_second` (default: the default judging budget, 10 pairs
per second, shared by 8 categories); after every `check_every` pairs (per category) the controller
looks: that is continuous peeking. A category's true effect is D = P(win) - P(loss), with `tie_rate`
ties. Each stage's gate is the policy's (lower bound above -margin, the margin shrinking as the next
stage's weight grows), with its bake time and minimum pairs; the rollback test runs throughout. A run
ends at a rollback, at completion (the candidate becomes stable), or when every category has `max_pairs`
pairs. For comparison, `method` can replace the rollback test by the naive checks Flagger (a threshold on
the mean judge score, failing after 5 failed checks) or Kayenta (a one-sided Mann-Whitney test, each
check) would run; the rest stays the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from monitoring.decision import Action, Evidence, Phase, Progress, category_alpha, decide
from monitoring.policy import RolloutPolicy
from monitoring.sequential import CategoryTest

DEFAULT_NAMES = ["reasoning", "math", "coding", "extraction", "summarization", "writing", "roleplay", "knowledge"]
Method = Literal["sequential", "threshold", "mannwhitney"]
FLAGGER_FAILED_CHECKS = 5
NAIVE_WINDOW = 100  # pairs in one "interval" for the threshold check


@dataclass(frozen=True)
class SimSpec:
    categories: list[str]
    effects: dict[str, float]
    tie_rate: float = 0.4
    check_every: int = 10
    pairs_per_second: float = 1.25
    max_pairs: int = 10_000
    runs: int = 1000
    seed: int = 0
    method: Method = "sequential"


@dataclass
class RunResult:
    outcome: str  # rolled_back | promoted | undecided
    category: str | None = None  # the category that triggered a rollback
    pairs: int = 0  # pairs in that category at the decision (rollback), or per category (promotion)
    seconds: float = 0.0
    stage_pairs: list[int] = field(default_factory=list)  # pairs per category when each stage was passed
    pinned: list[str] = field(default_factory=list)
    stage: int = 0  # where the run ended
    weight_pct: float = 0.0  # the candidate's share of traffic when it ended
    inconclusive: bool = False  # a stage deadline passed on the way


def _probabilities(effect: float, tie: float) -> tuple[float, float, float]:
    win, loss = (1 - tie + effect) / 2, (1 - tie - effect) / 2
    if min(win, loss) < 0:
        raise ValueError(f"effect {effect} impossible with tie rate {tie}")
    return win, tie, loss


def _counts(rng: np.random.Generator, spec: SimSpec, runs: int) -> tuple[NDArray[Any], ...]:
    """Cumulative (wins, ties, losses) at each check: arrays of shape (runs, checks, categories)."""
    checks = spec.max_pairs // spec.check_every
    shape = (runs, checks, len(spec.categories))
    out = [np.zeros(shape, dtype=np.int64) for _ in range(3)]
    for j, cat in enumerate(spec.categories):
        p = _probabilities(spec.effects.get(cat, 0.0), spec.tie_rate)
        per_check = rng.multinomial(spec.check_every, p, size=(runs, checks))
        for k in range(3):
            out[k][:, :, j] = np.cumsum(per_check[:, :, k], axis=1)
    return tuple(out)


@dataclass(frozen=True)
class _Evidence:
    rejected: NDArray[np.bool_]  # (runs, checks, categories)
    cleared: NDArray[np.bool_]  # (margins, runs, checks, categories)
    margin_index: NDArray[np.int64]  # (stages + 1, categories): the gate of entering each stage


def _evidence(spec: SimSpec, policy: RolloutPolicy, w: NDArray[Any], t: NDArray[Any], lo: NDArray[Any]) -> _Evidence:
    alpha = category_alpha(policy, spec.categories)
    n_stages = len(policy.stages)
    gates = [[policy.gate_margin(s, c) for c in spec.categories] for s in range(n_stages + 1)]
    margins = sorted({m for row in gates for m in row})
    rejected = np.zeros(w.shape, dtype=bool)
    ok = np.zeros((len(margins), *w.shape), dtype=bool)
    for j, cat in enumerate(spec.categories):
        test = CategoryTest.design(policy.category(cat).tolerance, alpha, policy.alpha, policy.design_effect,
                                   policy.final_margin)
        for i, margin in enumerate(margins):
            ok[i, ..., j] = test.cleared(w[..., j], t[..., j], lo[..., j], margin)
        if spec.method == "sequential":
            rejected[..., j] = test.rejected(w[..., j], t[..., j], lo[..., j])
        elif spec.method == "threshold":
            rejected[..., j] = _flagger(w[..., j], lo[..., j], spec.check_every, policy.category(cat).tolerance)
        else:
            rejected[..., j] = _kayenta(w[..., j], t[..., j], lo[..., j])
    index = np.array([[margins.index(m) for m in row] for row in gates], dtype=np.int64)
    return _Evidence(rejected, ok, index)


def _flagger(w: NDArray[Any], lo: NDArray[Any], every: int, tol: float) -> NDArray[np.bool_]:
    """Mean judge score over the last interval below -tolerance counts as a failed check; rollback once
    FLAGGER_FAILED_CHECKS checks have failed."""
    lag = max(NAIVE_WINDOW // every, 1)
    diff = (w - lo).astype(float)
    window = diff - np.concatenate([np.zeros_like(diff[:, :lag]), diff[:, :-lag]], axis=1)
    n = np.minimum(np.arange(1, w.shape[1] + 1) * every, NAIVE_WINDOW)[None, :]
    failed = np.cumsum(window / n < -tol, axis=1)
    return np.asarray(failed >= FLAGGER_FAILED_CHECKS)


def _kayenta(w: NDArray[Any], t: NDArray[Any], lo: NDArray[Any], alpha: float = 0.05) -> NDArray[np.bool_]:
    """One-sided Mann-Whitney U (candidate scores below stable's) on all pairs so far, every check."""
    from scipy.stats import norm

    # candidate score (1 + X)/2 vs stable score (1 - X)/2: the normal approximation with tie correction
    n = (w + t + lo).astype(float)
    # U for candidate > stable over all n*n cross pairs of the two samples
    a = np.stack([lo, t, w], axis=-1).astype(float)  # candidate counts at scores 0, .5, 1
    b = np.stack([w, t, lo], axis=-1).astype(float)  # stable counts at scores 0, .5, 1
    less = a[..., 0] * (b[..., 1] + b[..., 2]) + a[..., 1] * b[..., 2]
    eq = (a * b).sum(-1)
    u = (n * n - less - eq) + 0.5 * eq  # candidate ranked above stable, ties half
    mu = n * n / 2
    tie_term = ((a + b) ** 3 - (a + b)).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(n * n / 12 * ((2 * n + 1) - tie_term / (2 * n * (2 * n - 1))))
        z = (u - mu) / sigma
    return np.asarray(np.nan_to_num(norm.cdf(z), nan=1.0) < alpha)


def simulate_run(spec: SimSpec, policy: RolloutPolicy, ev: _Evidence, run: int,
                 n_at: Callable[[int], int]) -> RunResult:
    """Step one run through its checks with the real decide()."""
    progress = Progress(Phase.SHADOW if policy.stages[0].weight_pct == 0 else Phase.CANARY, 0, 0.0)
    stage_pairs: list[int] = []
    inconclusive = False
    dt = spec.check_every / spec.pairs_per_second
    cols = np.arange(len(spec.categories))
    checks = ev.rejected.shape[1]

    def end(outcome: str, n: int, now: float, category: str | None = None) -> RunResult:
        return RunResult(outcome, category, n, now, stage_pairs, list(progress.pinned), progress.stage,
                         policy.stages[progress.stage].weight_pct if outcome != "promoted" else 100.0, inconclusive)

    for k in range(checks):
        now = (k + 1) * dt
        n = n_at(k)
        gate = ev.cleared[ev.margin_index[progress.stage + 1], run, k, cols]
        evidence = {c: Evidence(n, bool(ev.rejected[run, k, j]), bool(gate[j])) for j, c in enumerate(spec.categories)}
        d = decide(policy, progress, evidence, now)
        if d.action == Action.ROLLBACK:
            return end("rolled_back", n, now, d.category)
        if d.action == Action.PIN and d.category:
            progress = Progress(progress.phase, progress.stage, progress.stage_started_at,
                                progress.pairs_at_stage_start, (*progress.pinned, d.category))
        elif d.action in (Action.PROMOTE, Action.COMPLETE):
            stage_pairs.append(n)
            if d.action == Action.COMPLETE:
                return end("promoted", n, now)
            progress = Progress(Phase.CANARY, progress.stage + 1, now, n * len(spec.categories), progress.pinned)
        elif d.action == Action.INCONCLUSIVE:
            inconclusive = True
            progress = Progress(Phase.INCONCLUSIVE, progress.stage, progress.stage_started_at,
                                progress.pairs_at_stage_start, progress.pinned)
    return end("undecided", n_at(checks - 1), checks * dt)


def simulate(spec: SimSpec, policy: RolloutPolicy, chunk: int = 100,
             progress_cb: Callable[[int], None] | None = None) -> list[RunResult]:
    rng = np.random.default_rng(spec.seed)
    results: list[RunResult] = []
    for start in range(0, spec.runs, chunk):
        size = min(chunk, spec.runs - start)
        w, t, lo = _counts(rng, spec, size)
        ev = _evidence(spec, policy, w, t, lo)
        for r in range(size):
            results.append(simulate_run(spec, policy, ev, r, lambda k: (k + 1) * spec.check_every))
        if progress_cb:
            progress_cb(len(results))
    return results


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _pct_all(values: list[float | None], q: float) -> float | None:
    """A quantile where None means "never": None when the quantile falls among them."""
    if not values:
        return None
    ranked = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ranked[min(int(np.ceil(q / 100 * len(ranked))) - 1, len(ranked) - 1)] if q > 0 else ranked[0]


def _by_stage(results: list[RunResult]) -> dict[str, dict[str, int]]:
    """How runs ended, by outcome, at which stage (index and weight)."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        where = "completed" if r.outcome == "promoted" else f"stage {r.stage} ({r.weight_pct:g}%)"
        out.setdefault(r.outcome, {})
        out[r.outcome][where] = out[r.outcome].get(where, 0) + 1
    return out


def summarise(spec: SimSpec, results: list[RunResult], spec_stages: int = 6) -> dict[str, Any]:
    """`spec_stages`: how many stages the policy has."""
    n = len(results)
    rb = [r for r in results if r.outcome == "rolled_back"]
    pr = [r for r in results if r.outcome == "promoted"]

    def block(rows: list[RunResult]) -> dict[str, Any]:
        return {
            "rollback_rate": len(rows) / n,
            "median_pairs_to_rollback": _pct([r.pairs for r in rows], 50),
            "p95_pairs_to_rollback": _pct([r.pairs for r in rows], 95),
            "median_seconds_to_rollback": _pct([r.seconds for r in rows], 50),
            "p95_seconds_to_rollback": _pct([r.seconds for r in rows], 95),
        }

    stages = max((len(r.stage_pairs) for r in results), default=0)
    weights = [r.weight_pct for r in rb]
    enter_last = spec_stages - 2  # stage_pairs[i]: when stage i was passed, i.e. stage i + 1 entered
    last: list[float | None] = [r.stage_pairs[enter_last] if len(r.stage_pairs) > enter_last >= 0 else None
                                for r in results]
    out: dict[str, Any] = {
        "runs": n, "method": spec.method, "tie_rate": spec.tie_rate, "check_every": spec.check_every,
        "max_pairs": spec.max_pairs, "effects": spec.effects,
        **block(rb),
        "promotion_rate": len(pr) / n,
        "undecided_rate": sum(r.outcome == "undecided" for r in results) / n,
        "median_pairs_to_promote": _pct([r.pairs for r in pr], 50),
        "p95_pairs_to_promote": _pct([r.pairs for r in pr], 95),
        "median_seconds_to_promote": _pct([r.seconds for r in pr], 50),
        # per category, until the candidate became stable; runs that did not complete count as never
        # (infinite), so these are quantiles over all runs, not only the lucky ones
        "median_pairs_to_complete": _pct_all([r.pairs if r.outcome == "promoted" else None for r in results], 50),
        "p95_pairs_to_complete": _pct_all([r.pairs if r.outcome == "promoted" else None for r in results], 95),
        "median_pairs_per_category_at_stage": [
            _pct([r.stage_pairs[i] for r in results if len(r.stage_pairs) > i], 50) for i in range(stages)],
        # entering the last stage (100% in the default policy), over all runs (None: never)
        "reached_last_stage_rate": len([v for v in last if v is not None]) / n,
        "median_pairs_to_reach_last_stage": _pct_all(last, 50),
        "p95_pairs_to_reach_last_stage": _pct_all(last, 95),
        "weight_pct_at_rollback": {"p50": _pct(weights, 50), "p95": _pct(weights, 95),
                                   "max": max(weights) if weights else None,
                                   "runs": {f"{w:g}": weights.count(w) for w in sorted(set(weights))}},
        "outcome_by_stage": _by_stage(results),
        "inconclusive_rate": sum(r.inconclusive for r in results) / n,
        "categories": {},
    }
    for cat in spec.categories:
        rows = [r for r in rb if r.category == cat]
        out["categories"][cat] = {"effect": spec.effects.get(cat, 0.0), **block(rows),
                                  "promotion_rate": len(pr) / n,
                                  "pinned_rate": sum(cat in r.pinned for r in results) / n}
    return out
