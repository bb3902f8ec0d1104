"""The judge: one OpenAI-compatible chat call per verdict, and the pairwise comparison in both orders
(candidate as A, then stable as A) combined by judges/verdicts.py. The live worker and the preflight both
judge through it, so a pair means the same thing in both."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from judges.config import JudgeConfig
from judges.openai_http import CallFailed, OpenAIHTTP
from judges.prompts import pairwise_messages
from judges.verdicts import ParseFailure, Verdict, combine, parse_pairwise
from monitoring import metrics as m


@dataclass(frozen=True)
class PairVerdict:
    outcome: int  # for the candidate: +1 win, 0 tie, -1 loss
    consistent: bool  # both orders agreed
    verdicts: list[str]  # per order: A, B, tie
    explanations: list[str]


class Judge:
    def __init__(self, cfg: JudgeConfig, http: OpenAIHTTP) -> None:
        self.cfg = cfg
        self.http = http
        self._slots = asyncio.Semaphore(cfg.max_concurrency)

    async def call(self, messages: list[dict[str, str]], mode: str) -> str:
        j = self.cfg
        body = {"model": j.model, "messages": messages, "temperature": j.temperature, "max_tokens": j.max_tokens}
        async with self._slots:
            t0 = time.perf_counter()
            try:
                text, _ = await self.http.create(j.base_url.rstrip("/"), "chat", body, j.api_key_env, j.timeout_s)
            except CallFailed as e:
                m.JUDGE_CALLS.labels(mode, "error").inc()
                raise CallFailed(f"judge_{e.reason}", str(e)) from None
            finally:
                m.JUDGE_LATENCY.observe(time.perf_counter() - t0)
        m.JUDGE_CALLS.labels(mode, "ok").inc()
        return text

    async def _ask(self, messages: list[dict[str, str]]) -> tuple[Verdict, str]:
        text = await self.call(messages, "pairwise")
        try:
            return parse_pairwise(text), text
        except ParseFailure:
            m.JUDGE_PARSE_FAILURES.inc()
            raise

    async def pairwise(self, question: str, candidate: str, stable: str, reference: str | None,
                       category: str) -> PairVerdict:
        """Both orders, concurrently; raises CallFailed or ParseFailure (never a made-up verdict)."""
        override = self.cfg.prompts.get(category)
        (v1, x1), (v2, x2) = await asyncio.gather(
            self._ask(pairwise_messages(question, candidate, stable, reference, category, override)),
            self._ask(pairwise_messages(question, stable, candidate, reference, category, override)))
        outcome, consistent = combine(v1, v2)
        return PairVerdict(outcome, consistent, [v1.value, v2.value], [x1, x2])
