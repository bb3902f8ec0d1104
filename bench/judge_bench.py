"""Judging costs: (1) what sampling adds to the request path (decision, record, buffer push), (2) the
background append rate to the Redis Stream, (3) one worker's pairs/s against a fast judge; with --faults,
(4) samples through a Redis outage (two gateway replicas, the default budget, a worker judging throughout),
(5) a killed worker's backlog taken over, (6) a worker through a Redis restart.

Needs a Redis (default 127.0.0.1:6379; a unique key prefix is used and deleted) and starts the shared
fake upstream (the versions) and bench/fast_judge.py (the judge) itself. The fault cases start and kill a
redis-server of their own.
  .venv/bin/python bench/judge_bench.py [--redis redis://127.0.0.1:6379/0] [--pairs 1000] [--faults]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import orjson
from _support import HARNESS, REPO, wait  # bench/ is on sys.path when run as a script

from gateway.proxy.sampling import RequestSampler
from judges.config import JudgingConfig
from judges.queue import GROUP, JudgeQueue
from judges.redaction import Redactor
from judges.sampling import Sampler, SamplingConfig
from judges.sink import SampleSink
from judges.worker import JudgeWorker
from monitoring import metrics as m
from router.classify import Label
from router.live_state import LiveState
from router.state import AliasState, VersionRecord
from router.store import StateStore, connect

UPSTREAM, JUDGE = 18010, 18300

BODY = {"model": "bot", "temperature": 0.2, "max_tokens": 64,
        "messages": [{"role": "system", "content": "You are helpful."},
                     {"role": "user", "content": "Write a short poem about the sea and the wind, please."}]}
ANSWER = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "The sea sighs " * 20}}]})
SAMPLE = {"alias": "bot", "rollout_id": "r1", "category": "writing", "endpoint": "chat", "served_version": "v1",
          "served_arm": "stable", "stable": "v1", "candidate": "v2", "messages": BODY["messages"],
          "answer": "The sea sighs " * 20, "params": {"max_tokens": 64}}


def queued_samples(tag: str, n: int) -> list[tuple[float, bytes]]:
    now = time.time()
    return [(now, orjson.dumps({**SAMPLE, "request_id": f"{tag}-{i}", "ts": now})) for i in range(n)]


STREAM = [b'data: {"choices":[{"index":0,"delta":{"content":"word "}}]}\n\n' for _ in range(16)] + [b"data: [DONE]\n\n"]



async def request_path_cost(queue: JudgeQueue, n: int) -> None:
    sink = SampleSink(queue, buffer_size=1_000_000, max_per_second=10**9, max_per_day=10**9)
    alias = AliasState(name="bot", stable="v1", candidate="v2", weight_bp=1000, rollout_id="r1")
    version = VersionRecord(name="v1", base_url="http://x/v1", model="m")
    for rate, what in ((0.0, "not sampled"), (1.0, "sampled, plain answer"), (1.0, "sampled, 16-chunk stream")):
        cfg = SamplingConfig(default_rate=rate, min_per_window=0, max_per_second=10**9, max_per_day=10**9)
        rs = RequestSampler(Sampler(cfg), sink, Redactor.from_config(cfg), True)
        stream = "stream" in what
        times = []
        for i in range(n):
            t = time.perf_counter_ns()
            rs.consider(request_id=f"{what}-{i}", alias=alias, version=version, arm="stable", endpoint="chat",
                        body=BODY, opt_out=False, label=Label("writing", 0.9, "embedding"),
                        answer_bytes=STREAM if stream else [ANSWER], stream=stream)
            times.append(time.perf_counter_ns() - t)
        times.sort()
        print(f"request path, {what:26s}: p50 {times[n // 2] / 1000:6.1f} us, p99 {times[int(n * .99)] / 1000:6.1f} us")
    t = time.perf_counter()
    pending = len(sink.buffer)
    await sink.flush_once()
    dt = time.perf_counter() - t
    print(f"background append to the Redis Stream: {pending} samples in {dt:.2f}s = {pending / dt:,.0f} samples/s")


async def worker_throughput(url: str, prefix: str, pairs: int) -> None:
    client, state = await _state(url, prefix)
    w = _worker(client, prefix, state)
    await w.queue.append(queued_samples("bench", pairs), 10**9, 10**9)
    t = time.perf_counter()
    task = asyncio.create_task(w.run())
    await _until(lambda: _true(w.stats.judged + w.stats.dead >= pairs), 300, "throughput run")
    dt = time.perf_counter() - t
    w.stop()
    await task
    await w.http.close()
    await state.stop()
    await client.aclose()
    print(f"one worker: {pairs} pairs (1 generation + 2 judge calls each) in {dt:.1f}s = {pairs / dt:.0f} pairs/s "
          f"(concurrency 32, failed attempts {w.stats.failed_attempts}, dead-lettered {w.stats.dead})")


class OwnRedis:
    """A redis-server this bench may kill -9 and restart (same port, same append-only file)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="judge-bench-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                      self.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
                                     stdout=subprocess.DEVNULL)
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout != b"PONG\n":
            time.sleep(0.02)
        return time.monotonic()

    def kill(self) -> None:
        assert self.proc
        self.proc.kill()  # SIGKILL, as the reproduction
        self.proc.wait()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def _state(url: str, prefix: str) -> tuple[Any, LiveState]:
    client = connect(url, timeout_s=2)
    store = StateStore(client, prefix)
    await store.write(versions=[VersionRecord(name=v, base_url=f"http://127.0.0.1:{UPSTREAM}/v1", model="fake-model")
                                for v in ("v1", "v2")],
                      aliases=[AliasState(name="bot", stable="v1", candidate="v2", rollout_id="r1")])
    state = LiveState(store)
    await state.start()
    return client, state


def _worker(client: Any, prefix: str, state: LiveState) -> JudgeWorker:
    cfg = JudgingConfig.model_validate({"judge": {"base_url": f"http://127.0.0.1:{JUDGE}/v1", "max_concurrency": 32},
                                        "worker": {"concurrency": 32, "metrics_port": None}})  # default timings
    return JudgeWorker(cfg, JudgeQueue(client, prefix), state)


async def _until(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not await pred():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not done in {timeout:.0f}s")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def outage(offered_per_s: float, outage_s: float, before_s: float, after_s: float) -> None:
    """Two replicas answer and sample (rate 1.0) at offered_per_s each, the default budget (10/s, all
    replicas) decides, Redis is SIGKILLed for outage_s, a worker judges throughout. Ground truth: every
    second may admit min(budget, candidates answered in it)."""
    srv = OwnRedis()
    srv.start()
    prefix = f"judge-bench-outage-{os.getpid()}"
    client, state = await _state(srv.url, prefix)
    cfg = SamplingConfig(default_rate=1.0, min_per_window=0)  # the default budget: 10/s, 100,000/day
    alias = AliasState(name="bot", stable="v1", candidate="v2", weight_bp=1000, rollout_id="r1")
    version = VersionRecord(name="v1", base_url="http://x/v1", model="m")
    pushed: list[int] = []  # the second each candidate was answered in
    replicas = []
    for _ in range(2):
        sink = SampleSink(JudgeQueue(connect(srv.url, timeout_s=1), prefix), buffer_size=cfg.buffer_size,
                          max_per_second=cfg.max_per_second, max_per_day=cfg.max_per_day)
        push = sink.push

        def record(ts: float, payload: bytes, push: Any = push) -> None:
            pushed.append(int(ts))
            push(ts, payload)
        sink.push = record  # type: ignore[method-assign]
        sink.start()
        replicas.append(RequestSampler(Sampler(cfg), sink, Redactor.from_config(cfg), False))
    worker = _worker(client, prefix, state)
    work = asyncio.create_task(worker.run())
    over0 = m.SAMPLES_OVER_BUDGET._value.get()
    n = 0
    t_start = time.monotonic()

    async def offer(seconds: float) -> None:
        nonlocal n
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for rs in replicas:
                n += 1
                rs.consider(request_id=os.urandom(12).hex(), alias=alias, version=version, arm="stable",
                            endpoint="chat", body=BODY, opt_out=False, label=Label("writing", 0.9, "embedding"),
                            answer_bytes=[ANSWER], stream=False)
            await asyncio.sleep(1 / offered_per_s)

    stats_key = JudgeQueue(client, prefix).keys.stats("bot", "r1")
    await offer(before_s)
    srv.kill()
    await offer(outage_s)
    restarted = srv.start()
    held = sum(min(cfg.max_per_second, k) for k in Counter(pushed).values())  # everything sampled so far
    flushed = asyncio.create_task(_until(lambda: _true(all(not r.sink.buffer for r in replicas)), 60, "flushed"))
    caught_up = asyncio.create_task(_until(lambda: _judged(client, stats_key, held), 300, "outage judged"))
    await offer(after_s)
    expected = sum(min(cfg.max_per_second, k) for k in Counter(pushed).values())
    await _until(lambda: _judged(client, stats_key, expected), 300, "all judged")
    await asyncio.sleep(2)  # anything judged twice would show now
    n_stats = int(await client.hget(stats_key, "writing:n") or 0)
    unique = len(await client.zrange(JudgeQueue(client, prefix).keys.pairs("bot"), 0, -1))
    over = m.SAMPLES_OVER_BUDGET._value.get() - over0
    print(f"outage: {n} answers over {time.monotonic() - t_start:.0f}s from 2 replicas ({offered_per_s:g}/s each), "
          f"Redis SIGKILLed for {outage_s:g}s, budget {cfg.max_per_second}/s: {len(pushed)} candidates, "
          f"{expected} within the budget of their second, {unique} judged ({n_stats} counted), "
          f"lost {expected - unique}, double-counted {n_stats - unique}, {over} over budget (not sampled), "
          f"dropped {m.SAMPLES_DROPPED.labels('overflow')._value.get():g}")
    print(f"  recovery after Redis returned: the outage's buffers flushed {await flushed - restarted:.2f}s and "
          f"everything sampled until then judged {await caught_up - restarted:.2f}s after the restart")
    worker.stop()
    await work
    for r in replicas:
        await r.sink.stop()
        await r.sink.queue.redis.aclose()
    await worker.http.close()
    await state.stop()
    await client.aclose()
    srv.close()


async def _true(v: bool) -> bool:
    return v


async def _judged(client: Any, key: str, n: int) -> bool:
    return int(await client.hget(key, "writing:n") or 0) >= n


async def reclaim(n: int, url: str) -> None:
    """A worker SIGKILLed with n samples delivered and unacknowledged; a fresh worker (default timings)."""
    prefix = f"judge-bench-reclaim-{os.getpid()}"
    client, state = await _state(url, prefix)
    q = JudgeQueue(client, prefix)
    await q.ensure_group()
    await q.append(queued_samples("r", n), 10**9, 10**9)
    await client.xreadgroup(GROUP, "killed-worker", {q.keys.samples: ">"}, count=n)
    worker = _worker(client, prefix, state)
    t0 = time.monotonic()
    work = asyncio.create_task(worker.run())
    done = await _until(lambda: _true(worker.stats.judged + worker.stats.dead >= n), 300, "backlog judged")
    print(f"reclaim: {n} samples pending under a killed worker, a new worker (dead_after_s "
          f"{worker.cfg.worker.dead_after_s:g}, claim_idle_s {worker.cfg.worker.claim_idle_s:g}) judged all in "
          f"{done - t0:.1f}s")
    worker.stop()
    await work
    await worker.http.close()
    await state.stop()
    await _drop(client, prefix)
    await client.aclose()


async def restart(n: int) -> None:
    """Redis SIGKILLed and restarted under a running, idle worker; then n new samples."""
    srv = OwnRedis()
    srv.start()
    prefix = f"judge-bench-restart-{os.getpid()}"
    client, state = await _state(srv.url, prefix)
    worker = _worker(client, prefix, state)
    work = asyncio.create_task(worker.run())
    await asyncio.sleep(1)
    srv.kill()
    await asyncio.sleep(2)
    restarted = srv.start()
    fresh = connect(srv.url, timeout_s=2)
    await JudgeQueue(fresh, prefix).append(queued_samples("n", n), 10**9, 10**9)
    done = await _until(lambda: _true(worker.stats.judged + worker.stats.dead >= n), 300, "judged after restart")
    print(f"restart: Redis SIGKILLed under a running worker and restarted 2s later; {n} new samples judged "
          f"{done - restarted:.2f}s after the restart")
    worker.stop()
    await work
    await worker.http.close()
    await state.stop()
    await fresh.aclose()
    await client.aclose()
    srv.close()


async def _drop(client: Any, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i:i + 500])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("-n", type=int, default=20_000, help="request-path calls per case")
    ap.add_argument("--faults", action="store_true", help="also: outage, killed worker, Redis restart")
    ap.add_argument("--outage-s", type=float, default=6.0)
    ap.add_argument("--offered", type=float, default=8.0, help="candidates per second per replica (outage case)")
    ap.add_argument("--backlog", type=int, default=576, help="pending samples of the killed worker")
    a = ap.parse_args()
    procs = [subprocess.Popen([sys.executable, str(HARNESS / "upstream.py"), "--port", str(UPSTREAM), "--chunks", "32"],
                              stdout=subprocess.DEVNULL, start_new_session=True),
             subprocess.Popen([sys.executable, str(REPO / "bench" / "fast_judge.py"), "--port", str(JUDGE)],
                              stdout=subprocess.DEVNULL, start_new_session=True)]
    prefix = f"judge-bench-{os.getpid()}"
    client = connect(a.redis, timeout_s=10)
    try:
        wait(f"http://127.0.0.1:{UPSTREAM}/health")
        wait(f"http://127.0.0.1:{JUDGE}/")
        await request_path_cost(JudgeQueue(client, prefix), a.n)
        await worker_throughput(a.redis, f"{prefix}-w", a.pairs)
        if a.faults:
            await outage(a.offered, a.outage_s, before_s=4.0, after_s=4.0)
            await reclaim(a.backlog, a.redis)
            await restart(200)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGINT)
            p.wait(timeout=10)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i:i + 500])
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
