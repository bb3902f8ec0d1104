"""Judging costs: (1) what sampling adds to the request path (decision, record, buffer push), (2) the
background append rate to the Redis Stream, (3) one worker's pairs/s against a fast judge.

Needs a Redis (default 127.0.0.1:6379; a unique key prefix is used and deleted) and starts the shared
fake upstream (the versions) and bench/fast_judge.py (the judge) itself.
  .venv/bin/python bench/judge_bench.py [--redis redis://127.0.0.1:6379/0] [--pairs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson
from _support import HARNESS, REPO, wait  # bench/ is on sys.path when run as a script

from gateway.proxy.sampling import RequestSampler
from judges.config import JudgingConfig
from judges.queue import JudgeQueue
from judges.redaction import Redactor
from judges.sampling import Sampler, SamplingConfig
from judges.sink import SampleSink
from judges.worker import JudgeWorker
from router.classify import Label
from router.live_state import LiveState
from router.state import AliasState, VersionRecord
from router.store import StateStore, connect

UPSTREAM, JUDGE = 18010, 18300

BODY = {"model": "bot", "temperature": 0.2, "max_tokens": 64,
        "messages": [{"role": "system", "content": "You are helpful."},
                     {"role": "user", "content": "Write a short poem about the sea and the wind, please."}]}
ANSWER = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "The sea sighs " * 20}}]})
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


async def worker_throughput(client, prefix: str, pairs: int) -> None:
    store = StateStore(client, prefix)
    await store.write(versions=[VersionRecord(name=v, base_url=f"http://127.0.0.1:{UPSTREAM}/v1", model="fake-model")
                                for v in ("v1", "v2")],
                      aliases=[AliasState(name="bot", stable="v1", candidate="v2", rollout_id="r1")])
    cfg = JudgingConfig.model_validate({"judge": {"base_url": f"http://127.0.0.1:{JUDGE}/v1", "max_concurrency": 32},
                                        "worker": {"concurrency": 32, "metrics_port": None}})
    queue = JudgeQueue(client, prefix)
    sample = {"alias": "bot", "rollout_id": "r1", "category": "writing", "endpoint": "chat",
              "served_version": "v1", "served_arm": "stable", "stable": "v1", "candidate": "v2",
              "messages": BODY["messages"], "answer": "The sea sighs " * 20, "params": {"max_tokens": 64}}
    payloads = [orjson.dumps({**sample, "request_id": f"bench-{i}", "ts": time.time()}) for i in range(pairs)]
    await queue.append([(time.time(), p) for p in payloads], 10**9, 10**9)
    state = LiveState(store)
    await state.start()
    w = JudgeWorker(cfg, queue, state)
    t = time.perf_counter()
    task = asyncio.create_task(w.run())
    while w.stats.judged < pairs:
        await asyncio.sleep(0.05)
    dt = time.perf_counter() - t
    w.stop()
    await task
    await w.http.close()
    await state.stop()
    print(f"one worker: {pairs} pairs (1 generation + 2 judge calls each) in {dt:.1f}s = {pairs / dt:.0f} pairs/s "
          f"(concurrency 32, failures {w.stats.failed_attempts})")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("-n", type=int, default=20_000, help="request-path calls per case")
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
        await worker_throughput(client, f"{prefix}-w", a.pairs)
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
