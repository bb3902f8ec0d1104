"""The policy simulator behind `cliffguard simulate`: synthetic paired outcomes driven through the real
statistics (monitoring.sequential) and the real controller decision (monitoring.decision.decide).

Each category receives judged pairs at `pairs_per_second`; after every `check_every` pairs (per
category) the controller looks: that is continuous peeking. A category's true effect is
D = P(win) - P(loss), with `tie_rate` ties. A run ends at a rollback, at full promotion, or when every
category has `max_pairs` pairs. For comparison, `method` can replace the sequential evidence by the
naive checks Flagger (a threshold on the mean judge score, failing after 5 failed checks) or Kayenta (a
one-sided Mann-Whitney test, each check) would run; the decision logic stays the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from monitoring.decision import Action, Evidence, Phase, Progress, category_alpha, decide
from monitoring.policy import RolloutPolicy
from monitoring.sequential import cleared, log_evalue_worse

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
    pairs_per_second: float = 5.0
    max_pairs: int = 3000
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


def _evidence(spec: SimSpec, policy: RolloutPolicy, w: NDArray[Any], t: NDArray[Any], lo: NDArray[Any]
              ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    alpha = category_alpha(policy, spec.categories)
    rejected = np.zeros(w.shape, dtype=bool)
    ok = np.zeros(w.shape, dtype=bool)
    for j, cat in enumerate(spec.categories):
        tol = policy.category(cat).tolerance
        ok[..., j] = cleared(w[..., j], t[..., j], lo[..., j], tol, alpha)
        if spec.method == "sequential":
            rejected[..., j] = log_evalue_worse(w[..., j], t[..., j], lo[..., j], tol, policy.design_effect) >= np.log(
                1 / alpha)
        elif spec.method == "threshold":
            rejected[..., j] = _flagger(w[..., j], lo[..., j], spec.check_every, tol)
        else:
            rejected[..., j] = _kayenta(w[..., j], t[..., j], lo[..., j])
    return rejected, ok


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


def simulate_run(spec: SimSpec, policy: RolloutPolicy, rejected: NDArray[np.bool_], ok: NDArray[np.bool_],
                 n_at: Callable[[int], int]) -> RunResult:
    """Step one run through its checks with the real decide()."""
    progress = Progress(Phase.SHADOW if policy.stages[0].weight_pct == 0 else Phase.CANARY, 0, 0.0)
    stage_pairs: list[int] = []
    dt = spec.check_every / spec.pairs_per_second
    for k in range(rejected.shape[0]):
        now = (k + 1) * dt
        n = n_at(k)
        evidence = {c: Evidence(n, bool(rejected[k, j]), bool(ok[k, j])) for j, c in enumerate(spec.categories)}
        d = decide(policy, progress, evidence, now)
        if d.action == Action.ROLLBACK:
            return RunResult("rolled_back", d.category, n, now, stage_pairs, list(progress.pinned))
        if d.action == Action.PIN and d.category:
            progress = Progress(progress.phase, progress.stage, progress.stage_started_at,
                                progress.pairs_at_stage_start, (*progress.pinned, d.category))
        elif d.action in (Action.PROMOTE, Action.COMPLETE):
            stage_pairs.append(n)
            if d.action == Action.COMPLETE:
                return RunResult("promoted", None, n, now, stage_pairs, list(progress.pinned))
            progress = Progress(Phase.CANARY, progress.stage + 1, now, n * len(spec.categories), progress.pinned)
        elif d.action == Action.INCONCLUSIVE:
            progress = Progress(Phase.INCONCLUSIVE, progress.stage, progress.stage_started_at,
                                progress.pairs_at_stage_start, progress.pinned)
    return RunResult("undecided", None, n_at(rejected.shape[0] - 1), rejected.shape[0] * dt, stage_pairs,
                     list(progress.pinned))


def simulate(spec: SimSpec, policy: RolloutPolicy, chunk: int = 100,
             progress_cb: Callable[[int], None] | None = None) -> list[RunResult]:
    rng = np.random.default_rng(spec.seed)
    results: list[RunResult] = []
    for start in range(0, spec.runs, chunk):
        size = min(chunk, spec.runs - start)
        w, t, lo = _counts(rng, spec, size)
        rejected, ok = _evidence(spec, policy, w, t, lo)
        for r in range(size):
            results.append(simulate_run(spec, policy, rejected[r], ok[r], lambda k: (k + 1) * spec.check_every))
        if progress_cb:
            progress_cb(len(results))
    return results


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(spec: SimSpec, results: list[RunResult]) -> dict[str, Any]:
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
    out: dict[str, Any] = {
        "runs": n, "method": spec.method, "tie_rate": spec.tie_rate, "check_every": spec.check_every,
        "max_pairs": spec.max_pairs, "effects": spec.effects,
        **block(rb),
        "promotion_rate": len(pr) / n,
        "undecided_rate": sum(r.outcome == "undecided" for r in results) / n,
        "median_pairs_to_promote": _pct([r.pairs for r in pr], 50),
        "p95_pairs_to_promote": _pct([r.pairs for r in pr], 95),
        "median_seconds_to_promote": _pct([r.seconds for r in pr], 50),
        "median_pairs_per_category_at_stage": [
            _pct([r.stage_pairs[i] for r in results if len(r.stage_pairs) > i], 50) for i in range(stages)],
        "categories": {},
    }
    for cat in spec.categories:
        rows = [r for r in rb if r.category == cat]
        out["categories"][cat] = {"effect": spec.effects.get(cat, 0.0), **block(rows),
                                  "promotion_rate": len(pr) / n,
                                  "pinned_rate": sum(cat in r.pinned for r in results) / n}
    return out
