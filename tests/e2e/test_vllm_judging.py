"""Judging with real vLLM CPU servers as the two versions, and as the judge."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from judges.config import JudgingConfig
from judges.queue import JudgeQueue
from judges.worker import JudgeWorker
from monitoring import metrics as m
from router.live_state import LiveState
from router.store import StateStore, connect
from tests.support.fake_judge import FakeJudge
from tests.support.metrics import sample
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.e2e
PROMPTS = ["What is the capital of France?", "Write a haiku about rain.", "Sort [3, 1, 2] in Python."]


def cfg(judge_url: str, judge_model: str, max_attempts: int = 5) -> JudgingConfig:
    return JudgingConfig.model_validate({
        "sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
        "judge": {"base_url": f"{judge_url}/v1", "model": judge_model, "max_tokens": 32, "timeout_s": 60},
        "worker": {"claim_idle_s": 0.5, "retry_backoff_s": 0.01, "metrics_port": None,
                   "max_attempts": max_attempts},
    })


async def run_worker(redis_url: str, prefix: str, c: JudgingConfig, until, timeout: float = 90) -> JudgeWorker:
    client = connect(redis_url, timeout_s=5)
    state = LiveState(StateStore(client, prefix))
    await state.start()
    w = JudgeWorker(c, JudgeQueue(client, prefix), state)
    task = asyncio.create_task(w.run())
    deadline = time.monotonic() + timeout
    try:
        while not until(w):
            assert time.monotonic() < deadline, w.stats
            await asyncio.sleep(0.1)
    finally:
        w.stop()
        await asyncio.wait_for(task, 30)
        await w.http.close()
        await state.stop()
        await client.aclose()
    return w


def vllm_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sample(text, "vllm:request_success_total")


def send(gw: ThreadServer) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as h:
        for i, p in enumerate(PROMPTS):
            r = h.post("/v1/chat/completions", json={"model": "bot", "max_tokens": 12, "temperature": 0,
                                                     "stream": i % 2 == 0,
                                                     "messages": [{"role": "user", "content": p}]})
            assert r.status_code == 200


def versions(a, b):
    return [{"name": "base-v1", "base_url": f"{a.url}/v1", "model": "base"},
            {"name": "perturbed", "base_url": f"{b.url}/v1", "model": "perturbed"}]


async def test_vllm_versions_shadow_answers_and_scripted_verdicts(vllm_pair, gateway_factory, redis_srv, key_prefix):
    a, b = vllm_pair
    judge = FakeJudge("always_a")  # position bias: every pair must come out a tie, inconsistent
    served_before = vllm_requests(b.url)
    with ThreadServer(judge.app) as judge_srv:
        c = cfg(judge_srv.url, "scripted")
        gw = gateway_factory(versions(a, b), [{"name": "bot", "stable": "base-v1", "candidate": "perturbed",
                                                "weight_pct": 0}], judging=c.model_dump())
        send(gw)
        w = await run_worker(redis_srv.url, key_prefix, c, lambda w: w.stats.judged >= 3)
    assert w.stats.judged == 3 and len(judge.calls) == 6
    # shadow: nobody was routed to the perturbed server, which generated exactly the 3 candidate answers
    assert vllm_requests(b.url) - served_before == 3
    client = connect(redis_srv.url)
    stats = await JudgeQueue(client, key_prefix).stats("bot", "perturbed")
    ids = await client.zrange(f"{key_prefix}:judge:pairs:bot", 0, -1)
    pairs = [json.loads(await client.get(f"{key_prefix}:judge:pair:{i.decode()}")) for i in ids]
    await client.aclose()
    judged = [p for p in pairs if p["decided_by"] == "judge"]  # identical answers are ties without a judge
    assert sum(s["n"] for s in stats.values()) == 3
    assert sum(s.get("inconsistent", 0) for s in stats.values()) == len(judged)
    for p in pairs:  # a tiny model may stop at once: answers can be empty strings, never missing
        assert isinstance(p["candidate_answer"]["text"], str) and isinstance(p["stable_answer"]["text"], str)
        assert p["outcome"] == 0
    for p in judged:
        assert p["verdicts"] == ["A", "A"] and p["position_consistent"] is False


async def test_real_vllm_as_judge_gives_parse_failures_not_verdicts(vllm_pair, gateway_factory, redis_srv,
                                                                    key_prefix):
    a, b = vllm_pair
    c = cfg(a.url, "base", max_attempts=1)  # the tiny base model judges: it answers nonsense
    gw = gateway_factory(versions(a, b), [{"name": "bot", "stable": "base-v1", "candidate": "perturbed",
                                            "weight_pct": 50}], judging=c.model_dump())
    send(gw)
    before = m.JUDGE_PARSE_FAILURES._value.get()
    w = await run_worker(redis_srv.url, key_prefix, c, lambda w: w.stats.dead >= 3, timeout=180)
    assert w.stats.judged == 0 and w.stats.dead == 3
    assert m.JUDGE_PARSE_FAILURES._value.get() - before >= 3
    client = connect(redis_srv.url)
    assert await JudgeQueue(client, key_prefix).stats("bot", "perturbed") == {}  # no win, loss or tie
    await client.aclose()


async def test_responses_api_samples_are_regenerated_through_responses(vllm_pair, gateway_factory, redis_srv,
                                                                       key_prefix):
    a, b = vllm_pair
    judge = FakeJudge("always_a")
    served_before = vllm_requests(b.url)
    with ThreadServer(judge.app) as judge_srv:
        c = cfg(judge_srv.url, "scripted")
        gw = gateway_factory(versions(a, b), [{"name": "bot", "stable": "base-v1", "candidate": "perturbed",
                                                "weight_pct": 0}], judging=c.model_dump())
        with httpx.Client(base_url=gw.url, timeout=60) as h:
            for i, p in enumerate(PROMPTS[:2]):
                r = h.post("/v1/responses", json={"model": "bot", "input": p, "instructions": "Answer briefly.",
                                                  "max_output_tokens": 12, "temperature": 0, "stream": i == 1})
                assert r.status_code == 200
        w = await run_worker(redis_srv.url, key_prefix, c, lambda w: w.stats.judged >= 2)
    assert w.stats.judged == 2 and w.stats.dead == 0
    assert vllm_requests(b.url) - served_before == 2  # the candidate's answers, generated by the worker
    client = connect(redis_srv.url)
    ids = await client.zrange(f"{key_prefix}:judge:pairs:bot", 0, -1)
    pairs = [json.loads(await client.get(f"{key_prefix}:judge:pair:{i.decode()}")) for i in ids]
    await client.aclose()
    assert {p["question"] for p in pairs} == {f"system: Answer briefly.\nuser: {p}" for p in PROMPTS[:2]}
    assert all(p["stable_answer"]["text"] and isinstance(p["candidate_answer"]["text"], str) for p in pairs)
