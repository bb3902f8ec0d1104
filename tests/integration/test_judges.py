"""Sampling through the gateway and the judge worker, against real Redis and real HTTP backends with a
scripted judge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from judges.config import JudgingConfig
from judges.queue import GROUP, JudgeQueue
from judges.records import Sample
from judges.sampling import SamplingConfig, unit_hash
from judges.sink import SampleSink
from judges.worker import JudgeWorker
from monitoring import guards
from monitoring import metrics as m
from router.live_state import LiveState
from router.store import StateStore, connect
from tests.support.fake_judge import FakeJudge
from tests.support.servers import RedisServer, ThreadServer

MSG = "Explain photosynthesis in two sentences."


def judging(judge_url: str, sampling: dict[str, Any] | None = None, single: bool = False,
            **worker: Any) -> dict[str, Any]:
    return {
        "single_when_no_candidate": single,
        "sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000, **(sampling or {})},
        "judge": {"base_url": f"{judge_url}/v1", "model": "scripted-judge", "timeout_s": 10},
        # a stop within the rig's 10 s wait, whatever is in hand (unfinished samples stay pending)
        "worker": {"claim_idle_s": 0.3, "retry_backoff_s": 0.01, "metrics_port": None, "stop_grace_s": 3.0,
                   **worker},
    }


class Rig:
    """Gateway + two scripted versions + scripted judge + helpers to run a worker."""

    def __init__(self, backend_factory: Callable[..., Any], gateway_factory: Callable[..., ThreadServer],
                 redis_url: str, prefix: str, judge_mode: str = "prefer:candidate", weight: float = 0.0,
                 candidate: bool = True, sampling: dict[str, Any] | None = None, single: bool = False,
                 **worker: Any) -> None:
        self.stable, s = backend_factory("stable", model="base", text="the stable version answers this well")
        self.cand, c = backend_factory("cand", model="ft", text="the candidate version answers this better")
        self.judge = FakeJudge(judge_mode)
        self.judge_srv = ThreadServer(self.judge.app).start()
        self.redis_url, self.prefix = redis_url, prefix
        self.cfg = JudgingConfig.model_validate(judging(self.judge_srv.url, sampling, single, **worker))
        alias = {"name": "bot", "stable": "v1"} | ({"candidate": "v2", "weight_pct": weight} if candidate else {})
        self.start_gateway = lambda: gateway_factory(  # noqa: E731 - a second start uses the same data_dir
            [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
             {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}], [alias],
            judging=self.cfg.model_dump(), redis_url=redis_url, prefix=prefix)
        self.gw = self.start_gateway()

    def ask(self, n: int, stream_every: int = 2, **extra: Any) -> list[httpx.Response]:
        out = []
        with httpx.Client(base_url=self.gw.url, timeout=20) as h:
            for i in range(n):
                body = {"model": "bot", "temperature": 0.3, "max_tokens": 20, "stream": i % stream_every == 1,
                        "messages": [{"role": "user", "content": f"{MSG} (#{i})"}], **extra.get("body", {})}
                # the header layer labels them, so these tests do not depend on the model's view of "(#i)"
                headers = {"x-cliffguard-category": "knowledge", **extra.get("headers", {})}
                out.append(h.post("/v1/chat/completions", json=body, headers=headers))
        return out

    def state(self) -> tuple[Any, JudgeQueue, LiveState]:
        client = connect(self.redis_url, timeout_s=5)
        return client, JudgeQueue(client, self.prefix), LiveState(StateStore(client, self.prefix))

    async def queued(self, q: JudgeQueue, n: int, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while await q.redis.xlen(q.keys.samples) < n:
            assert time.monotonic() < deadline, "samples did not reach the stream"
            await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def worker(self, consumer: str | None = None) -> AsyncIterator[tuple[JudgeWorker, asyncio.Task[None]]]:
        client, q, state = self.state()
        await state.start()
        c = self.cfg.model_copy(deep=True)
        c.worker.consumer = consumer
        w = JudgeWorker(c, q, state)
        task = asyncio.create_task(w.run())
        try:
            yield w, task
        finally:
            w.stop()
            await asyncio.wait_for(task, 10)
            await w.http.close()
            await state.stop()
            await client.aclose()

    async def work_until(self, pred: Callable[[JudgeWorker], Any], timeout: float = 15,
                         consumer: str | None = None) -> JudgeWorker:
        async with self.worker(consumer) as (w, task):
            await until(w, task, pred, timeout)
        return w

    def stop(self) -> None:
        self.judge_srv.stop()


async def _maybe_async(v: Any) -> Any:
    return await v if asyncio.iscoroutine(v) else v


async def until(w: JudgeWorker, task: asyncio.Task[None], pred: Callable[[JudgeWorker], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await _maybe_async(pred(w)):
        assert time.monotonic() < deadline, f"condition not met; stats {w.stats}"
        assert not task.done(), task.exception()
        await asyncio.sleep(0.05)


@pytest.fixture
def rig(backend_factory, gateway_factory, redis_srv, key_prefix):
    made: list[Rig] = []

    def make(**kw: Any) -> Rig:
        r = Rig(backend_factory, gateway_factory, kw.pop("redis_url", redis_srv.url), key_prefix, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


async def stats(r: Rig) -> dict[str, dict[str, int]]:
    client, q, _ = r.state()
    try:
        rollout = json.loads(await client.hget(f"{r.prefix}:aliases", "bot"))["rollout_id"]
        return await q.stats("bot", rollout)
    finally:
        await client.aclose()


async def test_shadow_answers_and_verdicts_in_both_orders(rig):
    r = rig(weight=0.0)  # shadow: the candidate serves nobody, yet gets judged
    assert all(resp.headers["x-cliffguard-version"] == "v1" and resp.status_code == 200 for resp in r.ask(6))
    client, q, _ = r.state()
    await r.queued(q, 6)
    await client.aclose()
    w = await r.work_until(lambda w: w.stats.judged >= 6)
    assert w.stats.judged == 6
    gen = [b for b in r.cand.record.requests if not b.get("stream")]
    assert len(gen) == 6 and all(b["temperature"] == 0.3 and b["max_tokens"] == 20 for b in gen)
    assert len(r.judge.calls) == 12  # both orders for every pair
    firsts = {c[1]["content"].split("[The Start of Assistant A's Answer]\n")[1][:14] for c in r.judge.calls}
    assert firsts == {"the candidate ", "the stable ver"}
    s = await stats(r)
    assert s["knowledge"] == {"n": 6, "wins": 6}

    runner = CliRunner()
    env = {"CLIFFGUARD_REDIS_URL": r.redis_url, "CLIFFGUARD_KEY_PREFIX": r.prefix}
    def invoke(args: list[str], env: dict[str, str]) -> Any:  # the CLI runs its own event loop
        return asyncio.to_thread(runner.invoke, cli, args, env=env)

    exported = await invoke(["judgments", "export", "--alias", "bot", "--since", "1h"], env)
    assert exported.exit_code == 0, exported.output
    pairs = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    assert len(pairs) == 6 and all(p["outcome"] == 1 and p["verdicts"] == ["A", "B"] for p in pairs)
    shown = await invoke(["judgments", "show", pairs[0]["request_id"]], {**env, "COLUMNS": "150"})
    assert shown.exit_code == 0 and "candidate wins" in shown.stdout and "stable (v1)" in shown.stdout
    assert (await invoke(["judgments", "show", "nope"], env)).exit_code == 1


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


async def test_tool_call_answers_are_sampled_and_judged_with_their_calls(rig):
    r = rig(judge_mode="prefer:[tool call] get_weather", weight=100.0)
    r.cand.script.tool_call = ("get_weather", '{"city": "Oslo"}')  # the candidate answers with a call, no text
    assert all(x.status_code == 200 for x in r.ask(4, body={"tools": TOOLS}))  # plain and streamed
    await r.work_until(lambda w: w.stats.judged >= 4)
    assert (await stats(r))["knowledge"] == {"n": 4, "wins": 4}  # never judged as an empty answer
    regenerated = [b for b in r.stable.record.requests if not b.get("stream")]
    assert len(regenerated) >= 4 and all(b["tools"] == TOOLS for b in regenerated)
    assert len(r.judge.calls) == 8
    assert all('[tool call] get_weather({"city": "Oslo"})' in c[1]["content"] for c in r.judge.calls)


async def test_identical_answers_are_ties_without_a_judge_call(rig):
    r = rig(weight=0.0)
    r.cand.script.text = r.stable.script.text
    r.ask(3)
    await r.work_until(lambda w: w.stats.judged >= 3)
    assert (await stats(r))["knowledge"] == {"n": 3, "ties": 3}
    assert r.judge.calls == []


async def test_a_candidate_that_cannot_answer_loses_the_pair_and_counts_as_an_error(rig):
    r = rig(weight=0.0)
    r.cand.script.model = "ft-reloaded"  # its adapter `ft` is gone: 404 model not found, as vLLM answers
    r.ask(3)
    await r.work_until(lambda w: w.stats.judged >= 3)
    assert (await stats(r))["knowledge"] == {"n": 3, "losses": 3}  # not dead-lettered: evidence
    assert r.judge.calls == []
    client, _, _ = r.state()
    rollout = json.loads(await client.hget(f"{r.prefix}:aliases", "bot"))["rollout_id"]
    counts = guards.parse(await client.hgetall(guards.key(r.prefix, "bot", rollout)))
    await client.aclose()
    assert counts["v2"].errors == 3 and counts["v2"].requests == 3  # shadow generations feed the guards


async def test_position_bias_and_explicit_ties_count_as_ties(rig):
    r = rig(judge_mode="always_a", weight=100.0)
    r.ask(4)
    before = m.POSITION_INCONSISTENT.labels("bot", "knowledge")._value.get()
    await r.work_until(lambda w: w.stats.judged >= 4)
    s = (await stats(r))["knowledge"]
    assert s == {"n": 4, "ties": 4, "inconsistent": 4}
    assert m.POSITION_INCONSISTENT.labels("bot", "knowledge")._value.get() - before == 4
    r.judge.mode = "tie"
    r.ask(2, body={"user": "tie-user"})
    await r.work_until(lambda w: w.stats.judged >= 2)
    s = (await stats(r))["knowledge"]
    assert s["ties"] == 6 and s["inconsistent"] == 4  # explicit ties are consistent


async def test_judge_errors_are_retried_and_parse_failures_dead_lettered(rig):
    r = rig(judge_mode="prefer:candidate", max_attempts=2)
    r.judge.fail_first = 1  # one 500, then answers: the in-process retry succeeds
    r.ask(1)
    await r.work_until(lambda w: w.stats.judged >= 1)
    assert (await stats(r))["knowledge"]["n"] == 1

    r.judge.mode = "garbage"
    parse_before = m.JUDGE_PARSE_FAILURES._value.get()
    r.ask(1, body={"user": "garbage"})
    w = await r.work_until(lambda w: w.stats.dead >= 1, timeout=20)
    assert w.stats.judged == 0 and (await stats(r))["knowledge"]["n"] == 1  # nothing counted
    assert m.JUDGE_PARSE_FAILURES._value.get() - parse_before >= 2
    client, q, _ = r.state()
    dead = await client.xrange(q.keys.dead)
    assert len(dead) == 1 and dead[0][1][b"reason"] == b"max_attempts exceeded"
    assert (await client.xpending(q.keys.samples, GROUP))["pending"] == 0
    await client.aclose()


async def test_a_stopping_worker_does_not_wait_out_its_retry_backoff(rig):
    r = rig(retry_backoff_s=30.0, attempts_in_process=3)
    r.judge.fail_first = 1000  # the judge keeps failing: the worker is in its backoff when told to stop
    r.ask(1)
    client, q, _ = r.state()
    await r.queued(q, 1)
    async with r.worker() as (w, task):
        await until(w, task, lambda w: w.stats.failed_attempts >= 1, timeout=15)
        await _stops_leaving_the_sample_pending(client, q, w, task, within_s=5)


async def test_a_stopping_worker_gives_a_slow_judge_call_its_grace_then_leaves_the_sample_pending(rig):
    r = rig(stop_grace_s=0.5)
    r.judge.delay_s = 8.0  # a slow judge (the rig's timeout_s is 10): a stop must not wait for it
    r.ask(1)
    client, q, _ = r.state()
    await r.queued(q, 1)
    async with r.worker() as (w, task):
        await until(w, task, lambda _: r.judge.calls, timeout=15)
        await _stops_leaving_the_sample_pending(client, q, w, task, within_s=2)


async def _stops_leaving_the_sample_pending(client: Any, q: JudgeQueue, w: JudgeWorker, task: asyncio.Task[None],
                                            within_s: float) -> None:
    started = time.monotonic()
    w.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < within_s and w.stats.judged == 0 and w.stats.dead == 0
    assert (await client.xpending(q.keys.samples, GROUP))["pending"] == 1  # left for a later claim, not lost
    await client.aclose()


async def test_redelivered_and_duplicate_samples_count_once(rig):
    r = rig()
    r.ask(1)
    client, q, _ = r.state()
    await r.queued(q, 1)
    [(_, fields)] = await client.xrange(q.keys.samples)
    await q.append([(time.time(), fields[b"sample"])] * 2, 1000, 10_000)  # the same sample three times
    await client.aclose()
    w = await r.work_until(lambda w: w.stats.judged + w.stats.duplicates >= 3)
    assert w.stats.judged == 1 and w.stats.duplicates == 2
    assert (await stats(r))["knowledge"]["n"] == 1


async def test_a_killed_workers_pending_messages_are_finished_by_another(rig):
    r = rig()
    r.ask(3)
    client, q, _ = r.state()
    await r.queued(q, 3)
    await q.ensure_group()
    taken = await client.xreadgroup(GROUP, "worker-that-dies", {q.keys.samples: ">"}, count=3)
    assert len(taken[0][1]) == 3  # delivered to a worker that never acknowledges
    w = await r.work_until(lambda w: w.stats.judged >= 3, consumer="survivor")
    assert w.stats.judged == 3
    assert (await client.xpending(q.keys.samples, GROUP))["pending"] == 0
    await client.aclose()


async def test_redis_restart_loses_nothing(rig):
    srv = RedisServer(appendonly=True).start()
    try:
        r = rig(redis_url=srv.url)
        r.ask(4)
        client, q, _ = r.state()
        await r.queued(q, 4)
        await client.aclose()
        srv.kill()
        time.sleep(1.0)  # the gateway notices Redis is gone
        assert all(resp.status_code == 200 for resp in r.ask(3, body={"user": "during-outage"}))
        srv.start()  # same append-only file
        client, q, _ = r.state()
        await r.queued(q, 7, timeout=10)  # the 3 buffered during the outage arrive too
        await client.aclose()
        w = await r.work_until(lambda w: w.stats.judged >= 7, timeout=20)
        assert w.stats.judged == 7 and (await stats(r))["knowledge"]["n"] == 7
    finally:
        srv.stop()


async def test_buffer_overflow_while_redis_is_down_is_counted(rig):
    srv = RedisServer(appendonly=True).start()
    try:
        r = rig(redis_url=srv.url, sampling={"buffer_size": 2})
        srv.kill()
        time.sleep(0.5)
        before = m.SAMPLES_DROPPED.labels("overflow")._value.get()
        assert all(x.status_code == 200 for x in r.ask(5))  # requests never suffer
        assert m.SAMPLES_DROPPED.labels("overflow")._value.get() - before == 3  # the buffer holds 2
        srv.start()
        client, q, _ = r.state()
        await r.queued(q, 2, timeout=10)  # the buffered ones arrive when Redis returns
        await asyncio.sleep(0.3)
        assert await client.xlen(q.keys.samples) == 2
        await client.aclose()
    finally:
        srv.stop()


async def test_opt_out_and_redaction(rig):
    r = rig()
    r.ask(2, headers={"x-cliffguard-no-sample": "1"})
    r.ask(1, body={"messages": [{"role": "user", "content": "Mail me at jane.doe@example.com about my card "
                                                            "4111 1111 1111 1111"}]})
    client, q, _ = r.state()
    await r.queued(q, 1)
    await asyncio.sleep(0.3)
    rows = await client.xrange(q.keys.samples)
    await client.aclose()
    assert len(rows) == 1  # the opted-out requests were never sampled
    sample = Sample.from_fields(rows[0][1])
    assert sample.messages[0]["content"] == "Mail me at [REDACTED] about my card [REDACTED]"


async def test_a_long_word_or_an_image_cannot_stall_sampling(rig):
    # a client-controlled 1 MB run of word characters: the redaction patterns stay linear in it
    r = rig()
    t0 = time.monotonic()
    assert r.ask(1, body={"messages": [{"role": "user", "content": "x" * 1_000_000 + " a@b.io"}]})[0].status_code == 200
    image = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 200_000}}]
    assert r.ask(1, body={"messages": [{"role": "user", "content": image}]})[0].status_code == 200
    client, q, _ = r.state()
    await r.queued(q, 1)
    await asyncio.sleep(0.3)
    rows = await client.xrange(q.keys.samples)
    await client.aclose()
    assert time.monotonic() - t0 < 5
    assert len(rows) == 1  # the image request is not sampled: the judge reads text only
    assert Sample.from_fields(rows[0][1]).messages[0]["content"].endswith(" [REDACTED]")


async def test_single_answer_mode_without_a_candidate(rig):
    r = rig(judge_mode="rating:7", candidate=False, single=True)
    r.ask(2)
    await r.work_until(lambda w: w.stats.judged >= 2)
    assert (await stats(r))["knowledge"] == {"rated": 2, "rating_sum": 14}


async def test_without_a_candidate_nothing_is_sampled_unless_configured(rig):
    r = rig(candidate=False)  # single-answer mode is off by default: no rollout, no stored prompts
    assert all(x.status_code == 200 for x in r.ask(4))
    await asyncio.sleep(0.3)
    client, q, _ = r.state()
    assert not await client.exists(q.keys.samples)
    await client.aclose()


async def test_global_budget_holds_over_10k_attempts_from_two_replicas(redis_srv, key_prefix):
    """10,000 candidates from two replicas over 4 seconds, 50/s and 180/day allowed: each second admits its
    own 50, in order, the day stops at 180, and every candidate is decided (nothing left waiting)."""
    clients = [connect(redis_srv.url), connect(redis_srv.url)]
    replicas = [JudgeQueue(c, key_prefix) for c in clients]
    t0 = 86400 * 20_000 + 1_000.0
    admitted, over = 0, 0
    for second in range(4):  # 1,250 attempts per replica per second, interleaved in batches
        for _ in range(5):
            for q in replicas:
                cands = [(t0 + second + i / 250, b'{"n": %d}' % second) for i in range(250)]
                res = await q.append(cands, max_per_second=50, max_per_day=180)
                assert res.processed == 250
                admitted, over = admitted + res.admitted, over + res.over_budget
    assert admitted == 180 and over == 10_000 - 180  # 50 + 50 + 50 + 30: the day budget ends it
    rows = await clients[0].xrange(replicas[0].keys.samples)
    per_second = Counter(int(json.loads(f[b"sample"])["n"]) for _, f in rows)
    assert per_second == {0: 50, 1: 50, 2: 50, 3: 30}
    for c in clients:
        await c.aclose()


async def test_a_full_stream_defers_appends_and_never_trims_unjudged_samples(redis_srv, key_prefix):
    client = connect(redis_srv.url)
    sink = SampleSink(JudgeQueue(client, key_prefix, maxlen=5), buffer_size=100, max_per_second=100,
                      max_per_day=1000)
    for i in range(8):
        sink.push(time.time(), f'{{"i": {i}}}'.encode())
    assert not await sink.flush_once()  # 5 fit; the rest wait in order, nothing is dropped or trimmed
    assert await client.xlen(sink.queue.keys.samples) == 5 and [json.loads(p)["i"] for _, p in sink.buffer] == [5, 6, 7]
    await sink.queue.ensure_group()
    taken = await sink.queue.read("w", 10, 0)
    await client.xack(sink.queue.keys.samples, GROUP, *[i for i, _ in taken])
    assert await sink.queue.trim_done() == 5  # judged ones go; then the waiting ones fit
    assert await sink.flush_once() and await client.xlen(sink.queue.keys.samples) == 3
    await client.aclose()


# -- faults, bad input and data protection (issue 12) ----------------------------------------------------


def _delta(metric: Any) -> Callable[[], float]:
    before = metric._value.get()
    return lambda: metric._value.get() - before


async def test_an_outage_at_the_default_budget_loses_and_double_counts_nothing(rig):
    """Samples taken during a 5.5 s Redis outage used to be flushed in one burst against the budget of the
    second they reached Redis, and mostly dropped. Each is admitted by the second it was answered in."""
    srv = RedisServer(appendonly=True).start()
    try:
        r = rig(redis_url=srv.url, sampling={"max_per_second": SamplingConfig().max_per_second})
        lost, over = _delta(m.SAMPLES_DROPPED.labels("overflow")), _delta(m.SAMPLES_OVER_BUDGET)
        sent: list[httpx.Response] = []

        def paced(seconds: float) -> None:  # 6 sampled requests a second: under the budget of 10
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sent.extend(r.ask(1))
                time.sleep(1 / 6)

        paced(1.5)
        srv.kill()
        paced(5.5)
        srv.start()
        paced(1.0)
        assert all(x.status_code == 200 for x in sent)
        ids = {x.headers["x-request-id"] for x in sent}
        w = await r.work_until(lambda w: w.stats.judged >= len(sent), timeout=60)
        assert w.stats.judged == len(sent) and w.stats.duplicates == 0
        assert (await stats(r))["knowledge"]["n"] == len(sent)
        client, q, _ = r.state()
        stored = {json.loads(p)["request_id"] for p in await client.mget([q.keys.pair(i) for i in ids]) if p}
        await client.aclose()
        assert stored == ids and lost() == 0 and over() == 0
    finally:
        srv.stop()


async def test_a_gateway_stopping_with_redis_down_keeps_its_samples_on_disk(rig, tmp_path):
    srv = RedisServer(appendonly=True).start()
    try:
        r = rig(redis_url=srv.url)
        spilled, replayed = _delta(m.SAMPLES_SPILLED), _delta(m.SAMPLES_REPLAYED)
        srv.kill()
        assert all(x.status_code == 200 for x in r.ask(5))
        r.gw.stop()  # stops while Redis is unreachable: the buffer goes to data_dir
        files = list((tmp_path / "judging").glob("spill-*.jsonl"))
        assert len(files) == 1 and len(files[0].read_bytes().splitlines()) == 5 and spilled() == 5
        assert files[0].stat().st_mode & 0o077 == 0  # samples are for the gateway's eyes only
        srv.start()
        r.gw = r.start_gateway()  # the next start replays the file
        client, q, _ = r.state()
        await r.queued(q, 5, timeout=10)
        await client.aclose()
        assert replayed() == 5 and not list((tmp_path / "judging").glob("spill-*"))
        w = await r.work_until(lambda w: w.stats.judged >= 5)
        assert w.stats.judged == 5 and (await stats(r))["knowledge"]["n"] == 5
    finally:
        srv.stop()


async def test_the_clients_request_id_decides_neither_dedup_nor_sampling(rig):
    r = rig()
    shared = r.ask(20, headers={"x-request-id": "same-id-for-all"})  # 20 distinct requests, one client id
    ours = {x.headers["x-request-id"] for x in shared}
    assert len(ours) == 20 and "same-id-for-all" not in ours
    w = await r.work_until(lambda w: w.stats.judged >= 20)
    assert w.stats.judged == 20 and w.stats.duplicates == 0 and (await stats(r))["knowledge"]["n"] == 20
    client, q, _ = r.state()
    pair = json.loads(await client.get(q.keys.pair(next(iter(ours)))))
    await client.aclose()
    assert pair["client_request_id"] == "same-id-for-all"  # kept, for correlation only

    # an id that hashes under the rate no longer buys a sample on every request
    r.cfg.sampling.default_rate = 0.25
    favoured = next(f"pick-{i}" for i in range(1000) if unit_hash(f"pick-{i}") < 0.01)
    r.gw.stop()
    r.gw = r.start_gateway()
    sampled = _delta(m.SAMPLES.labels("bot", "knowledge"))
    r.ask(40, headers={"x-request-id": favoured})
    assert 0 < sampled() < 40  # about 10 of 40


class LeakyJudge(FakeJudge):
    """Quotes personal data in its explanations, as real judges do when the answers contain some."""

    def verdict(self, user: str) -> str:
        return f"A repeats jane.doe@example.com and 5500-0000-0000-0004. {super().verdict(user)}"


async def test_nothing_stored_matches_the_redaction_patterns(rig):
    """Personal data in every field a request and its answers can carry, through a real gateway and worker;
    then every key in Redis is read back: nothing matches the patterns."""
    email, card = "jane.doe@example.com", "4111 1111 1111 1111"
    r = rig(weight=50.0)
    r.judge.verdict = LeakyJudge(r.judge.mode).verdict  # type: ignore[method-assign]
    r.stable.script.text = f"Write to {email} or pay with {card} today"
    r.stable.script.chunks = 20
    r.cand.script.tool_call = ("send_mail", f'{{"to": "{email}", "card": "{card}"}}')
    messages = [
        {"role": "system", "content": f"The user is {email}."},
        {"role": "user", "content": [{"type": "text", "text": f"My card is {card}"},
                                     {"type": "text", "text": f"see https://img.example/{email}"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "lookup", "arguments": f'{{"email": "{email}"}}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": f"account of {email}, card {card}"},
        {"role": "user", "content": f"Email {email} the summary"},
    ]
    tools = [{"type": "function", "function": {"name": "send_mail", "description": f"mails from {email}",
                                                "parameters": {"type": "object", "properties": {}}}}]
    body = {"messages": messages, "tools": tools, "user": email, "metadata": {"reference": f"ask {email}"}}
    sent = r.ask(6, body=body, headers={"x-request-id": f"{email}-{card}"})
    with httpx.Client(base_url=r.gw.url, timeout=20) as h:
        for prompt in (f"Mail {email}", [f"card {card}", f"to {email}"]):
            sent.append(h.post("/v1/completions", headers={"x-cliffguard-category": "knowledge"},
                               json={"model": "bot", "prompt": prompt, "max_tokens": 20}))
    assert all(x.status_code == 200 for x in sent)
    await r.work_until(lambda w: w.stats.judged >= len(sent), timeout=30)

    client, _, _ = r.state()
    stored: list[bytes] = []
    async for key in client.scan_iter(match=f"{r.prefix}:*"):
        kind = (await client.type(key)).decode()
        if kind == "string":
            stored.append(await client.get(key))
        elif kind == "hash":
            stored += [x for kv in (await client.hgetall(key)).items() for x in kv]
        elif kind == "zset":
            stored += await client.zrange(key, 0, -1)
        elif kind == "stream":
            stored += [x for _, f in await client.xrange(key) for kv in f.items() for x in kv]
        elif kind in ("list", "set"):
            stored += await (client.lrange(key, 0, -1) if kind == "list" else client.smembers(key))
    await client.aclose()
    ours = {x.headers["x-request-id"] for x in sent}
    text = "\n".join(v.decode() for v in stored)
    for rid in ours:  # our ids are random hex: a run of digits in one is not a card number
        text = text.replace(rid, "<id>")
    assert text.count("[REDACTED]") > 50  # the pairs are there, redacted
    leaks = [mt.group() for p in SamplingConfig().redact_patterns for mt in re.finditer(p, text)]
    assert leaks == []


async def test_the_pair_index_is_trimmed_to_the_retention_on_every_write(redis_srv, key_prefix):
    client = connect(redis_srv.url)
    q, ttl, now = JudgeQueue(client, key_prefix), 30 * 86400, time.time()
    for rid, ts in (("old", now - 31 * 86400), ("new", now)):
        await q.record(request_id=rid, alias="bot", rollout_id="r", pair_json="{}", ts=ts,
                       increments={"math:n": 1}, ttl_s=ttl)
    assert await client.zrange(q.keys.pairs("bot"), 0, -1) == [b"new"]  # no export needed to trim it
    assert 0 < await client.ttl(q.keys.pairs("bot")) <= ttl
    await client.aclose()


async def test_a_gone_workers_backlog_is_reclaimed_in_seconds(rig):
    """A SIGKILLed worker's pending samples used to wait claim_idle_s (60 s), then come back 16 every 5 s."""
    r = rig(claim_idle_s=60, dead_after_s=1, concurrency=16)
    r.ask(1)
    client, q, _ = r.state()
    await r.queued(q, 1)
    [(_, fields)] = await client.xrange(q.keys.samples)
    template = json.loads(fields[b"sample"])
    n = 120
    await q.append([(time.time(), json.dumps({**template, "request_id": f"backlog-{i}"}).encode())
                    for i in range(n)], 1000, 10_000)
    await q.ensure_group()
    taken = await client.xreadgroup(GROUP, "worker-that-died", {q.keys.samples: ">"}, count=1000)
    assert len(taken[0][1]) == n + 1
    reclaimed = _delta(m.JUDGE_RECLAIMED.labels("gone"))
    t0 = time.monotonic()
    await r.work_until(lambda w: w.stats.judged >= n + 1, timeout=45)
    assert time.monotonic() - t0 < 30 and reclaimed() == n + 1
    assert (await client.xpending(q.keys.samples, GROUP))["pending"] == 0
    async with r.worker() as (w, task):  # idle: the judged entries are trimmed, the gone consumer forgotten
        await until(w, task, lambda _: _stream_done(client, q), 10)
    await client.aclose()


async def _stream_done(client: Any, q: JudgeQueue) -> bool:
    return await client.xlen(q.keys.samples) == 0 and not any(
        c["name"] == b"worker-that-died" for c in await client.xinfo_consumers(q.keys.samples, GROUP))


async def test_a_worker_keeps_judging_through_a_redis_restart(rig):
    """After a restart every pooled connection is stale; the first command on each used to fail outside
    the worker's error handling and park the sample for claim_idle_s."""
    srv = RedisServer(appendonly=True).start()
    try:
        r = rig(redis_url=srv.url, claim_idle_s=60, concurrency=4)
        async with r.worker() as (w, task):
            r.ask(4)
            await until(w, task, lambda w: w.stats.judged >= 4, 15)
            srv.kill()
            await asyncio.sleep(1.5)  # the worker meets the outage
            srv.start()
            r.ask(4, body={"user": "after-restart"})
            t0 = time.monotonic()
            await until(w, task, lambda w: w.stats.judged >= 8, 20)
            assert time.monotonic() - t0 < 10  # not claim_idle_s
        assert w.stats.judged == 8 and (await stats(r))["knowledge"]["n"] == 8
    finally:
        srv.stop()


async def test_the_queue_length_is_right_after_the_stream_was_trimmed(redis_srv, key_prefix):
    """Redis 7 keeps the group's `lag` wrong for good once entries ahead of it were trimmed (here by an
    older gateway's XADD MAXLEN): it reported thousands of unjudged samples when there were none."""
    client = connect(redis_srv.url, timeout_s=30)
    q = JudgeQueue(client, key_prefix)
    await q.ensure_group()

    async def add(n: int) -> None:
        pipe = client.pipeline(transaction=False)
        for _ in range(n):
            pipe.xadd(q.keys.samples, {"sample": b"{}"}, maxlen=1000, approximate=True)
        await pipe.execute()

    async def judge_all() -> None:
        while taken := await q.read("w", 1000, 0):
            await client.xack(q.keys.samples, GROUP, *[i for i, _ in taken])

    await add(20)
    early = [i for i, _ in await q.read("w", 5, 0)]  # delivered, acknowledged only later
    await add(10_000)
    await judge_all()
    await client.xack(q.keys.samples, GROUP, *early)
    assert await q.backlog() == (0, 0.0)  # nothing pending, nothing undelivered
    await add(3)
    assert (await q.backlog())[0] == 3
    await client.aclose()
