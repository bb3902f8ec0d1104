"""The preflight replay: every suite item through stable and candidate (off the request path, bounded
concurrency), scored by its programmatic check or by the judge in both orders, then the verdict per
category. Stable's answers are kept per version and suite (a baseline later candidates reuse); scored items
are kept per run, so an interrupted run resumes where it stopped."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from judges.answers import Answer, from_response
from judges.judge import Judge
from judges.openai_http import TRANSIENT_4XX, CallFailed, OpenAIHTTP
from judges.preflight.graders import Grader, GraderError, build
from judges.preflight.records import ITEM_IDENTIFIERS, ItemResult, PreflightResult
from judges.preflight.store import PreflightStore, run_id
from judges.preflight.suite import Suite, SuiteItem
from judges.prompts import question_text
from judges.redaction import Redactor
from judges.verdicts import ParseFailure
from monitoring.policy import RolloutPolicy
from monitoring.preflight import PreflightVerdict, verdict
from monitoring.sequential import Counts
from router.state import VersionRecord


@dataclass
class Plan:
    alias: str
    stable: VersionRecord
    candidate: VersionRecord
    policy: RolloutPolicy
    params: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 256})
    default_grader: str | dict[str, Any] | None = None  # for items that name none (None: the judge)
    concurrency: int = 8
    timeout_s: float = 120.0


class PreflightRunner:
    def __init__(self, store: PreflightStore, judge: Judge, http: OpenAIHTTP, redactor: Redactor) -> None:
        self.store = store
        self.judge = judge
        self.http = http
        self.redactor = redactor
        self._graders: dict[str, Grader] = {}

    def grader(self, spec: str | dict[str, Any] | None) -> Grader | None:
        if spec is None:
            return None
        key = repr(spec)
        if key not in self._graders:
            self._graders[key] = build(spec)
        return self._graders[key]

    async def run(self, suite: Suite, plan: Plan, actor: str, fresh: bool = False,
                  progress: Callable[[str], None] | None = None) -> PreflightResult:
        """Score every item not scored yet; `progress` is called once per item, done or resumed."""
        for it in suite.items:  # a bad grader spec fails before any backend is called
            self.grader(it.grader or plan.default_grader)
        rid = run_id(suite.hash, plan.alias, plan.stable.name, plan.candidate.name, self.judge.cfg.model)
        if fresh:
            await self.store.forget_run(rid)
        started = time.time()
        done = await self.store.scored(rid)
        baseline = await self.store.baseline(plan.stable.name, suite.hash)
        errors: dict[str, str] = {}
        slots = asyncio.Semaphore(plan.concurrency)
        for _ in range(len(done)):
            if progress:
                progress("resumed")

        async def one(item: SuiteItem) -> None:
            async with slots:
                try:
                    scored = await self._score(item, plan, baseline, suite.hash)
                except (CallFailed, ParseFailure, GraderError) as e:
                    errors[item.id] = f"{item.category}/{item.id}: {e}"
                    if progress:
                        progress("error")
                    return
                await self.store.save_item(rid, scored)
                done[item.id] = scored
                if progress:
                    progress("scored")

        await asyncio.gather(*(one(it) for it in suite.items if it.id not in done))
        items = [done[it.id] for it in suite.items if it.id in done]
        suite_cat = {it.id: it.category for it in suite.items}
        result = PreflightResult(run_id=rid, alias=plan.alias, suite_id=suite.id, suite_hash=suite.hash,
                                 suite_source=suite.source, stable=plan.stable.name, candidate=plan.candidate.name,
                                 judge_model=self.judge.cfg.model, started_at=started, finished_at=time.time(),
                                 verdict=aggregate(items, suite, plan.policy,
                                                   Counter(suite_cat[i] for i in errors)),
                                 errors=sorted(errors.values()),
                                 items=items)
        await self.store.save_result(result, actor)
        return result

    async def _score(self, item: SuiteItem, plan: Plan, baseline: dict[str, Answer], suite_hash: str) -> ItemResult:
        stable = baseline.get(item.id)
        if stable is None:
            stable = await self._answer(plan.stable, item, plan)
            await self.store.save_baseline(plan.stable.name, suite_hash, item.id, stable)
            baseline[item.id] = stable
        try:
            cand = await self._answer(plan.candidate, item, plan)
        except CallFailed as e:
            if e.status is None or not 400 <= e.status < 500 or e.status in TRANSIENT_4XX:
                raise
            cand = None  # the candidate refuses what stable answers: it loses the item (as in live judging)
        question = question_text(item.messages or [{"role": "user", "content": t} for t in item.turns], None)
        base = {"id": item.id, "category": item.category, "question": question, "reference": item.reference,
                "stable_answer": stable.render(), "candidate_answer": cand.render() if cand else ""}
        grader = self.grader(item.grader or plan.default_grader)
        if cand is None:
            scored = ItemResult(**base, outcome=-1, decided_by="candidate_failed")
        elif grader is not None:
            outcome, c_ok, s_ok = grader.outcome(cand.render(), stable.render(), item.model_dump())
            scored = ItemResult(**base, outcome=outcome, decided_by=f"grader:{grader.name}", candidate_passed=c_ok,
                                stable_passed=s_ok)
        elif cand.same_as(stable):
            scored = ItemResult(**base, outcome=0, decided_by="identical")
        else:
            v = await self.judge.pairwise(question, cand.render(), stable.render(), item.reference, item.category)
            scored = ItemResult(**base, outcome=v.outcome, decided_by="judge", consistent=v.consistent,
                                verdicts=v.verdicts, explanations=v.explanations)
        return self.redactor.record(scored, ITEM_IDENTIFIERS)

    async def _answer(self, version: VersionRecord, item: SuiteItem, plan: Plan) -> Answer:
        """The version's answer: a conversation in one call, or MT-Bench turns one after another (each
        turn sees this version's own earlier answers)."""
        steps = [item.messages] if item.messages else None
        history: list[dict[str, Any]] = []
        answer = Answer()
        for turn in steps or item.turns:
            messages = turn if isinstance(turn, list) else [*history, {"role": "user", "content": turn}]
            body = {**plan.params, "model": version.model, "messages": messages, "stream": False}
            _, data = await self.http.create(version.base_url, "chat", body, version.api_key_env, plan.timeout_s)
            got = from_response(data, "chat")
            if got is None:
                raise CallFailed("bad_response", f"no answer from {version.name}")
            answer = got
            history = [*messages, {"role": "assistant", "content": got.text}]
        return answer


def aggregate(items: list[ItemResult], suite: Suite, policy: RolloutPolicy, errors: Counter[str]) -> PreflightVerdict:
    """The verdict from the scored items; `errors`: items not scored, per category."""
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    graded: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for it in items:
        counts[it.category][it.outcome] += 1
        if it.candidate_passed is not None:
            g = graded[it.category]
            g[0] += 1
            g[1] += int(bool(it.candidate_passed))
            g[2] += int(bool(it.stable_passed))
    return verdict(policy, {c: Counts(v[1], v[0], v[-1]) for c, v in counts.items()},
                   {c: (g[0], g[1], g[2]) for c, g in graded.items()}, errors, list(suite.categories))
