"""`cliffguard worker`: turns queued samples into judged pairs.

For each sample (a Redis Stream entry, read through the consumer group `judges`): generate the other
version's answer to the same prompt with the same parameters (non-streamed, never shown to users); ask
the judge in both orders; combine into +1/0/-1 for the candidate; store the pair and add the counts in
one idempotent Redis script; acknowledge. Delivery is at-least-once: a failure leaves the entry pending,
any worker claims it after `claim_idle_s` (at once when its worker is gone: no heartbeat for
`dead_after_s`), and after `max_attempts` deliveries it goes to the dead letters. A redelivered entry that
was already recorded is only acknowledged. Every Redis call goes through one retry with backoff, so a
Redis restart (which leaves the pooled connections stale) only pauses the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from judges import answers
from judges.answers import Answer
from judges.config import JudgingConfig
from judges.judge import Judge
from judges.openai_http import TRANSIENT_4XX, CallFailed, OpenAIHTTP
from judges.prompts import question_text, single_messages
from judges.queue import GROUP, Entry, JudgeQueue
from judges.records import PAIR_IDENTIFIERS, PairResult, Sample
from judges.redaction import Redactor
from judges.verdicts import ParseFailure, parse_rating
from monitoring import metrics as m
from monitoring.guards import GuardCounters
from router.classify.prompt import responses_messages
from router.live_state import LiveState

log = logging.getLogger("cliffguard.worker")

T = TypeVar("T")
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)  # retried; other Redis errors are answers


# outcome for the candidate -> (stats hash field, metric label)
_OUTCOMES = {1: ("wins", "win"), 0: ("ties", "tie"), -1: ("losses", "loss")}


class Skip(Exception):
    """The sample cannot ever be judged (e.g. its version is gone): dead-letter it at once."""


class CandidateRefused(Exception):
    """The candidate answered a prompt that stable answered with a client error (e.g. 404: its LoRA
    adapter is gone). Not a transient failure: the candidate loses this pair."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail




@dataclass
class WorkerStats:
    judged: int = 0
    duplicates: int = 0
    failed_attempts: int = 0
    dead: int = 0


class JudgeWorker:
    def __init__(self, cfg: JudgingConfig, queue: JudgeQueue, state: LiveState,
                 http: OpenAIHTTP | None = None) -> None:
        self.cfg = cfg
        self.queue = queue
        self.r: Any = queue.redis  # redis-py's stubs do not type stream replies usefully
        self.state = state
        self.http = http or OpenAIHTTP()
        self.consumer = cfg.worker.consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.stats = WorkerStats()
        self.judge = Judge(cfg.judge, self.http)
        self._stopping = asyncio.Event()
        self._ttl_s = int(cfg.worker.pair_ttl_days * 86400)
        self.redactor = Redactor.from_config(cfg.sampling)  # the generated answer and the judge's words too
        self._beat_s = min(2.0, cfg.worker.dead_after_s / 4)
        # shadow generations are the other version's requests: the operational guards count them too
        self.guards = GuardCounters(queue.redis, queue.keys.prefix)

    # -- loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._redis(self.queue.ensure_group)
        self.guards.start()
        beat = asyncio.create_task(self._heartbeat(), name="cliffguard-worker-heartbeat")
        log.info("worker %s consuming %s", self.consumer, self.queue.keys.samples)
        stopping = asyncio.ensure_future(self._stopping.wait())
        tasks: set[asyncio.Task[None]] = set()
        in_hand: set[bytes] = set()  # entry ids being handled: a claim of our own slow one is not a second job
        # first what this consumer name was given before and never acknowledged (a restarted worker)
        backlog = await self._redis(self.queue.read, self.consumer, 10_000, 0, own_pending=True)
        last_claim, claiming = 0.0, False
        while not self._stopping.is_set():
            if len(tasks) >= self.cfg.worker.concurrency:  # full: wait for a free slot, or the stop
                await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
                continue
            free = self.cfg.worker.concurrency - len(tasks)
            try:
                entries, backlog = backlog[:free], backlog[free:]
                if not entries and (claiming or time.monotonic() - last_claim > self._claim_every_s):
                    entries = [e for e in await self._redis(self._claim, free) if e[0] not in in_hand]
                    claiming = len(entries) >= free  # a backlog: keep claiming as slots free up
                    last_claim = time.monotonic()
                if not entries:
                    entries = await self._redis(self.queue.read, self.consumer, free, 500)
            except RedisError as e:  # an answer, not an outage (e.g. a command refused): log, go on
                log.error("redis refused a command: %s", e)
                await asyncio.sleep(1.0)
                continue
            for entry_id, fields in entries:
                t = asyncio.create_task(self._handle(entry_id, fields))
                tasks.add(t)
                in_hand.add(entry_id)

                def done(t: asyncio.Task[None], entry_id: bytes = entry_id) -> None:
                    tasks.discard(t)
                    in_hand.discard(entry_id)
                    if not t.cancelled() and t.exception() is not None:
                        log.error("sample handling failed", exc_info=t.exception())
                t.add_done_callback(done)
        stopping.cancel()
        await self._drain(tasks)
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        await self.guards.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Samples in hand get `stop_grace_s` to finish; the rest are cancelled unacknowledged (a slow judge
        or backend must not hold up a stop: Kubernetes kills after 30 s). Nothing is lost: they stay pending,
        another worker claims them, and one recorded just before its cancel counts once (the done marker)."""
        if not tasks:
            return
        _, left = await asyncio.wait(tasks, timeout=self.cfg.worker.stop_grace_s)
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        if left:
            log.warning("stopped with %d samples unfinished; they stay pending for another worker", len(left))

    @property
    def _claim_every_s(self) -> float:
        return min(self.cfg.worker.claim_idle_s / 2, self.cfg.worker.dead_after_s / 2, 5.0)

    async def _redis(self, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One Redis call, retried with backoff while Redis is unreachable (a restart leaves every pooled
        connection stale: the first command on each fails). Gives up only when the worker stops."""
        backoff = 0.05
        while True:
            try:
                return await call(*args, **kwargs)
            except _REDIS_DOWN as e:
                if self._stopping.is_set():
                    raise
                log.warning("redis unavailable (%s); retrying in %.2fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _heartbeat(self) -> None:
        """Tells the other workers this consumer is alive, whatever it is busy with."""
        while True:
            with contextlib.suppress(*_REDIS_DOWN):  # the work loop reports the outage; the beat resumes with Redis
                await self.queue.heartbeat(self.consumer, self.cfg.worker.dead_after_s)
            await asyncio.sleep(self._beat_s)

    async def _claim(self, count: int) -> list[Entry]:
        """Pending entries to take over: all of a gone worker's at once, then any pending past claim_idle_s
        (a live worker's failed ones). Also trims what every worker is done with."""
        out: list[Entry] = []
        for gone, _ in await self.queue.gone_consumers(self.consumer, self.cfg.worker.dead_after_s):
            taken = await self.queue.claim_from(gone, self.consumer, count - len(out), self.cfg.worker.dead_after_s)
            if taken:
                m.JUDGE_RECLAIMED.labels("gone").inc(len(taken))
                log.info("took over %d samples of worker %s (gone)", len(taken), gone)
            out += taken
            if len(out) >= count:
                return out
        idle = await self.queue.claim_idle(self.consumer, self.cfg.worker.claim_idle_s, count - len(out))
        if idle:
            m.JUDGE_RECLAIMED.labels("idle").inc(len(idle))
        out += idle
        if not out:
            await self.queue.trim_done()
        return out

    async def _deliveries(self, entry_id: bytes) -> int:
        info = await self._redis(lambda: self.r.xpending_range(self.queue.keys.samples, GROUP, min=entry_id,
                                                               max=entry_id, count=1))
        return int(info[0]["times_delivered"]) if info else 1

    async def _ack(self, entry_id: bytes) -> None:
        await self._redis(lambda: self.r.xack(self.queue.keys.samples, GROUP, entry_id))

    # -- one entry ---------------------------------------------------------------------------------

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            sample = Sample.from_fields(fields)
        except (ValidationError, KeyError) as e:
            await self._dead(entry_id, fields, f"malformed sample: {e}")
            return
        if await self._redis(lambda: self.r.exists(self.queue.keys.done(sample.request_id))):
            self.stats.duplicates += 1  # judged before; this is a redelivery
            await self._ack(entry_id)
            return
        if await self._deliveries(entry_id) > self.cfg.worker.max_attempts:
            await self._dead(entry_id, fields, "max_attempts exceeded")
            return
        delay = self.cfg.worker.retry_backoff_s
        tries = self.cfg.worker.attempts_in_process
        for attempt in range(tries):  # in-process retries ride out a blip; later ones come through redelivery
            try:
                recorded = await self._judge(sample)
                self.stats.judged += int(recorded)
                self.stats.duplicates += int(not recorded)
                await self._ack(entry_id)
                return
            except Skip as e:
                await self._dead(entry_id, fields, str(e))
                return
            except (CallFailed, ParseFailure) as e:
                reason = "parse" if isinstance(e, ParseFailure) else e.reason
                m.JUDGE_FAILURES.labels(reason).inc()
                self.stats.failed_attempts += 1
                log.warning("sample %s attempt %d failed: %s", sample.request_id, attempt + 1, e)
                if attempt < tries - 1:
                    # a stop must not wait out the backoff: the sample stays pending and is claimed again
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    if self._stopping.is_set():
                        return
                    delay *= 2
            except RedisError as e:  # not an outage (those are retried): leave it pending for a later try
                log.warning("redis error while recording %s: %s", sample.request_id, e)
                return
        # still failing: leave it pending; it is claimed again after claim_idle_s

    async def _dead(self, entry_id: bytes, fields: dict[bytes, bytes], why: str) -> None:
        async def move() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.xadd(self.queue.keys.dead, {**fields, b"reason": why.encode(), b"entry": entry_id})
            pipe.xack(self.queue.keys.samples, GROUP, entry_id)
            await pipe.execute()
        await self._redis(move)
        self.stats.dead += 1
        m.JUDGE_DEAD_LETTERS.inc()
        log.error("sample %s dead-lettered: %s", entry_id.decode(), why)

    async def _judge(self, s: Sample) -> bool:
        messages = responses_messages({**s.params, "input": s.input}) if s.endpoint == "responses" else s.messages
        question = question_text(messages, s.prompt)
        if s.candidate is None:
            if not self.cfg.single_when_no_candidate:
                raise Skip("no candidate and single-answer mode is off")
            return await self._rate(s, question)
        other_name = s.candidate if s.served_arm == "stable" else s.stable
        try:
            other = await self._generate(s, other_name)
        except CandidateRefused as e:
            return await self._record_pair(s, question, s.answer, None, -1, "candidate_failed", [], [e.detail])
        cand, stable = (other, s.answer) if s.served_arm == "stable" else (s.answer, other)
        if cand.same_as(stable):  # nothing to judge: a tie, without a judge call (and without its noise)
            m.JUDGE_SKIPPED.labels("identical").inc()
            return await self._record_pair(s, question, stable, cand, 0, "identical", [], [])
        v = await self.judge.pairwise(question, cand.render(), stable.render(), s.reference, s.category)
        return await self._record_pair(s, question, stable, cand, v.outcome, "judge", v.verdicts, v.explanations,
                                       v.consistent)

    async def _record_pair(self, s: Sample, question: str, stable: Answer, cand: Answer | None, outcome: int,
                           decided_by: str, verdicts: list[str], explanations: list[str],
                           consistent: bool = True) -> bool:
        counter, label = _OUTCOMES[outcome]
        incr = {f"{s.category}:n": 1, f"{s.category}:{counter}": 1}
        if not consistent:
            incr[f"{s.category}:inconsistent"] = 1
        pair = PairResult(request_id=s.request_id, alias=s.alias, rollout_id=s.rollout_id, category=s.category,
                          mode="pairwise", stable=s.stable, candidate=s.candidate, question=question,
                          stable_answer=stable, candidate_answer=cand, outcome=outcome, decided_by=decided_by,
                          verdicts=verdicts, position_consistent=consistent, judge_explanations=explanations,
                          judge_model=self.cfg.judge.model, client_request_id=s.client_request_id, ts=time.time(),
                          messages=s.messages if s.endpoint == "chat" else None, reference=s.reference)
        recorded = await self._store(pair, incr)
        if recorded:
            m.JUDGED_PAIRS.labels(s.alias, s.candidate, s.category, label).inc()
            if not consistent:
                m.POSITION_INCONSISTENT.labels(s.alias, s.category).inc()
        return recorded

    async def _rate(self, s: Sample, question: str) -> bool:
        text = await self.judge.call(single_messages(question, s.answer.render()), "single")
        rating = parse_rating(text)
        pair = PairResult(request_id=s.request_id, alias=s.alias, rollout_id=s.rollout_id, category=s.category,
                          mode="single", stable=s.stable, candidate=None, question=question,
                          stable_answer=s.answer, candidate_answer=None, rating=rating, judge_explanations=[text],
                          judge_model=self.cfg.judge.model, client_request_id=s.client_request_id, ts=time.time())
        recorded = await self._store(pair, {f"{s.category}:rated": 1, f"{s.category}:rating_sum": round(rating)})
        if recorded:
            m.SINGLE_RATINGS.labels(s.alias, s.category).observe(rating)
        return recorded

    async def _store(self, pair: PairResult, increments: dict[str, int]) -> bool:
        """Redacted like the sample (the generated answer and the judge's words were never redacted), once."""
        stored = self.redactor.record(pair, PAIR_IDENTIFIERS)
        return await self._redis(lambda: self.queue.record(
            request_id=pair.request_id, alias=pair.alias, rollout_id=pair.rollout_id,
            pair_json=stored.model_dump_json(), ts=pair.ts, increments=increments, ttl_s=self._ttl_s))

    async def _generate(self, s: Sample, version_name: str) -> Answer:
        """The other version's answer to the sample's prompt (non-streamed, same parameters)."""
        version = self.state.snapshot.versions.get(version_name)
        if version is None:
            m.JUDGE_FAILURES.labels("version_missing").inc()
            raise Skip(f"version {version_name!r} is not registered")
        body: dict[str, Any] = {**s.params, "model": version.model, "stream": False}
        if s.endpoint == "responses":  # a shadow answer is neither kept by the backend nor left running
            body.update(input=s.input, store=False, background=False)
        else:
            body["messages" if s.endpoint == "chat" else "prompt"] = s.messages if s.endpoint == "chat" else s.prompt
        try:
            _, data = await self.http.create(version.base_url, s.endpoint, body, version.api_key_env,
                                             self.cfg.worker.generation_timeout_s)
        except CallFailed as e:
            self.guards.record(s.alias, s.rollout_id, version_name, error=True, empty=False, ttft_s=None)
            if version_name == s.candidate and e.status is not None and 400 <= e.status < 500 \
                    and e.status not in TRANSIENT_4XX:
                raise CandidateRefused(f"candidate {version_name} answered HTTP {e.status}: {e}") from None
            raise CallFailed(f"generation_{e.reason}", str(e)) from None
        answer = answers.from_response(data, s.endpoint)
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        generated = usage.get("completion_tokens", usage.get("output_tokens"))  # chat/completions, Responses
        self.guards.record(s.alias, s.rollout_id, version_name, error=answer is None,
                           empty=answer is not None and generated == 0, ttft_s=None)
        if answer is None:
            raise CallFailed("generation_bad_response", f"no answer in the response of {version_name}")
        return answer

    # -- queue health --------------------------------------------------------------------------------

    async def export_queue_metrics(self) -> tuple[int, float]:
        """Samples not yet judged (pending + undelivered) and the age of the oldest one."""
        length, lag = await self.queue.backlog()
        m.JUDGE_QUEUE_LENGTH.set(length)
        m.JUDGE_QUEUE_LAG.set(lag)
        return length, lag
