"""Gathering a report's data from Redis (monitoring/report.py renders it): a preflight by run id or
candidate version, a rollout by rollout id or alias (its latest rollout). Used by `cliffguard report` and
by `GET /admin/reports/{kind}/{ref}` (the console's link)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import orjson

from gateway.feedback import feedback_counts
from judges.preflight.records import PreflightResult
from judges.preflight.store import PreflightStore
from judges.queue import Keys
from judges.records import PairResult
from monitoring.analysis import category_stats
from monitoring.decision import category_alpha
from monitoring.policy import RolloutPolicy
from monitoring.report import Example, Interval, Mark, Point, Report
from router.store import StateStore

EXAMPLES = 5
POINTS = 40  # points per category on the estimate-over-time chart
_ENDS = ("rolled_back", "completed", "aborted")


class NotFound(LookupError):
    pass


async def preflight_report(store: StateStore, ref: str) -> Report:
    pf = PreflightStore(store)
    result = await pf.result(ref) if ref.startswith("pf-") else await pf.latest(ref)
    if result is None:
        raise NotFound(f"no preflight {ref!r} (a run id, or a version that was preflighted)")
    return preflight_view(result)


def preflight_view(r: PreflightResult) -> Report:
    v = r.verdict
    intervals = [Interval(category=c.category, n=c.n, wins=c.wins, ties=c.ties, losses=c.losses, estimate=c.estimate,
                          lower=c.lower, upper=c.upper, threshold=c.threshold, status="pass" if c.passed else "fail",
                          note=(f"checks passed: candidate {c.candidate_passed}/{c.graded}, stable "
                                f"{c.stable_passed}/{c.graded}" if c.graded else "")
                          + (f"; {c.errors} not scored" if c.errors else ""))
                 for c in v.categories.values()]
    estimate = {c: s.estimate for c, s in v.categories.items()}
    worst = sorted((it for it in r.items if it.outcome < 0), key=lambda it: (estimate.get(it.category, 0), it.id))
    decision = ("every category within its threshold" if v.passed else
                f"failed on {', '.join(v.failed)}: `rollout start` refuses {r.candidate} where the policy "
                "requires a preflight")
    return Report(
        kind="preflight", title=f"Preflight of {r.candidate} against {r.stable} ({r.alias})", decision=decision,
        passed=v.passed, intervals=intervals,
        facts=[("run", r.run_id), ("suite", f"{r.suite_id} ({len(r.items)} items scored)"),
               ("suite hash", r.suite_hash), ("source", r.suite_source or "-"), ("judge", r.judge_model),
               ("not scored", str(len(r.errors))), ("finished", _iso(r.finished_at))],
        examples=[Example(id=it.id, category=it.category, question=it.question, stable_answer=it.stable_answer,
                          candidate_answer=it.candidate_answer, decided_by=it.decided_by,
                          explanation=it.explanations[0] if it.explanations else "") for it in worst[:EXAMPLES]])


def _iso(ts: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def rollout_report(store: StateStore, ref: str, policy_of: Callable[[str], RolloutPolicy],
                         categories: list[str]) -> Report:
    events = await _all_events(store)
    mine = [e for e in events if ref in (_rid(e, "after"), _rid(e, "before"))]
    if not mine:  # an alias: its latest rollout
        starts = [e for e in events if e.get("alias") == ref and _rid(e, "after")
                  and _rid(e, "after") != _rid(e, "before")]
        if not starts:
            raise NotFound(f"no rollout {ref!r} (a rollout id, or an alias that had one)")
        ref = str(_rid(starts[-1], "after"))
        mine = [e for e in events if ref in (_rid(e, "after"), _rid(e, "before"))]
    alias = str(mine[0]["alias"])
    policy = policy_of(alias)
    alpha = category_alpha(policy, categories)
    pairs = await _pairs(store, alias, ref, mine[0]["ts"] - 1)
    series, totals = _series(pairs, policy, alpha)
    stage = len([e for e in mine if e["type"] == "promoted"]) + 1
    intervals = []
    for cat, (w, t, lo) in sorted(totals.items()):
        cp = policy.category(cat)
        s = category_stats(w, t, lo, cp.tolerance, alpha, policy.alpha, policy.design_effect, policy.final_margin,
                           policy.gate_margin(stage, cat))
        intervals.append(Interval(category=cat, n=s.n, wins=w, ties=t, losses=lo, estimate=s.estimate, lower=s.lower,
                                  upper=s.upper, threshold=cp.tolerance, status=s.status))
    marks = [Mark(ts=e["ts"], label=_label(e), detail=f"by {e.get('actor', '?')}"
                  + (f": {e['reason']}" if e.get("reason") else "")) for e in mine]
    end = next((e for e in reversed(mine) if e["type"] in _ENDS), None)
    decision = (f"{end['type'].replace('_', ' ')} by {end.get('actor')}: {end.get('reason') or '-'}" if end
                else f"in progress: {mine[-1]['type'].replace('_', ' ')}")
    regressed = {iv.category: iv.estimate for iv in intervals}
    losses = sorted((p for p in pairs if p.outcome == -1), key=lambda p: (regressed.get(p.category, 0), -p.ts))
    fb = await feedback_counts(store.redis, store.prefix, alias, ref)
    after = mine[-1].get("after") or {}
    first = mine[0].get("after") or {}
    return Report(
        kind="rollout", title=f"Rollout of {first.get('candidate') or after.get('candidate')} on {alias}",
        decision=decision, passed=None if end is None else end["type"] == "completed",
        facts=[("rollout", ref), ("stable", str(first.get("stable"))), ("phase now", str(after.get("phase"))),
               ("judged pairs", str(len(pairs))), ("started", _iso(mine[0]["ts"])),
               *([("forced past preflight", str(e.get("reason"))) for e in mine if e.get("forced")])],
        intervals=intervals, series=series, marks=marks,
        examples=[Example(id=p.request_id, category=p.category, question=p.question,
                          stable_answer=p.stable_answer.render() if p.stable_answer else "",
                          candidate_answer=p.candidate_answer.render() if p.candidate_answer else "(no answer)",
                          decided_by=p.decided_by,
                          explanation=p.judge_explanations[0] if p.judge_explanations else "")
                  for p in losses[:EXAMPLES]],
        feedback=[{"category": k.split(":", 1)[1], "arm": k.split(":", 1)[0], "feedback": str(v.get("feedback", 0)),
                   "negative": str(v.get("negative", 0)), "regenerated": str(v.get("regenerated", 0))}
                  for k, v in sorted(fb.items())])


def _rid(e: dict[str, Any], side: str) -> str | None:
    s = e.get(side)
    return s.get("rollout_id") or None if isinstance(s, dict) else None


def _label(e: dict[str, Any]) -> str:
    after = e.get("after") or {}
    w = after.get("weight_bp")
    return f"{e['type'].replace('_', ' ')}" + (f" {w / 100:g}%" if w is not None and e["type"] in (
        "rollout_started", "promoted", "split_set") else "")


async def _all_events(store: StateStore) -> list[dict[str, Any]]:
    r: Any = store.redis  # redis-py's stubs do not type stream replies usefully
    rows = await r.xrange(store.k_events)
    return [{"id": rid.decode(), **orjson.loads(f[b"data"])} for rid, f in rows]


async def _pairs(store: StateStore, alias: str, rollout_id: str, since: float) -> list[PairResult]:
    keys = Keys(store.prefix)
    r: Any = store.redis
    ids = await r.zrangebyscore(keys.pairs(alias), since, "+inf")
    out: list[PairResult] = []
    for i in range(0, len(ids), 500):
        for raw in await r.mget([keys.pair(x.decode()) for x in ids[i:i + 500]]):
            if raw:
                p = PairResult.model_validate_json(raw)
                if p.rollout_id == rollout_id and p.outcome is not None:
                    out.append(p)
    return sorted(out, key=lambda p: p.ts)


def _series(pairs: list[PairResult], policy: RolloutPolicy, alpha: float
            ) -> tuple[dict[str, list[Point]], dict[str, tuple[int, int, int]]]:
    """Each category's cumulative estimate and interval as the pairs came in (up to POINTS points)."""
    by_cat: dict[str, list[PairResult]] = defaultdict(list)
    for p in pairs:
        by_cat[p.category].append(p)
    series: dict[str, list[Point]] = {}
    totals: dict[str, tuple[int, int, int]] = {}
    for cat, ps in sorted(by_cat.items()):
        tol = policy.category(cat).tolerance
        step = max(1, len(ps) // POINTS)
        c: Counter[int] = Counter()
        pts = []
        for i, p in enumerate(ps, 1):
            c[p.outcome or 0] += 1
            if i % step == 0 or i == len(ps):
                s = category_stats(c[1], c[0], c[-1], tol, alpha, policy.alpha, policy.design_effect,
                                   policy.final_margin, policy.final_margin)
                pts.append(Point(ts=p.ts, n=i, estimate=s.estimate, lower=s.lower, upper=s.upper))
        series[cat] = pts
        totals[cat] = (c[1], c[0], c[-1])
    return series, totals
