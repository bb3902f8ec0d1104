"""Classifier speed and memory: the real model behind the real micro-batching service, as the gateway
runs it (1 torch thread per process), driven by N concurrent closed-loop requests with distinct prompts
(no cache hits). Prints per-request latency (submit to label) p50/p99, sustained classifications/s, and
the RSS the model adds to a process.
  .venv/bin/python bench/classifier_bench.py [--concurrency 50] [--seconds 15] [--threads 1] [--conversations]
With --conversations every request is a second turn: a distinct first turn, and a follow-up (the first
turn is new too, so both parts are encoded: the worst case for the per-part memo).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
import psutil

from router.classify.embedder import make_encoder
from router.classify.model import EmbeddingClassifier
from router.classify.service import ClassifierService
from router.classify.taxonomy import Taxonomy

EVAL = Path(__file__).parent / "data" / "classifier_eval.jsonl"


FOLLOW_UPS = ("and if it were twice as long?", "Now make it shorter.", "why?", "Can you check that again?")


async def closed_loop(svc: ClassifierService, prompts: list[str], concurrency: int, seconds: float,
                      conversations: bool = False) -> list[float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < stop:
            counter += 1
            text = f"{prompts[counter % len(prompts)]} (request {counter})"  # distinct: no cache hits
            # as `PromptParts.model_parts` gives them: the (empty) system prompt slot, then the user turns
            parts = ("", text, FOLLOW_UPS[counter % len(FOLLOW_UPS)]) if conversations else ("", text)
            t = time.perf_counter()
            label = await svc.submit(parts)
            assert label.layer != "unclassified", "overloaded: raise queue_size"
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--encoder", choices=["static", "contextual"], default="static")
    ap.add_argument("--conversations", action="store_true", help="second turns (two parts per request)")
    a = ap.parse_args()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    cache = Path("/tmp/cliffguard-bench-classifier")
    embedder = make_encoder(a.encoder, None, 128, a.threads, cache)
    model = EmbeddingClassifier.load(Taxonomy.build(), embedder, None, cache)
    model.classify([("", "warm-up")])
    rss1 = proc.memory_info().rss
    prompts = [json.loads(line)["prompt"] for line in EVAL.read_text().splitlines()]
    model = EmbeddingClassifier(model.embedder, model.head, memo_size=0)  # no memo: every part is encoded
    svc = ClassifierService(model.classify, min_confidence=0.2, batch_size=a.batch_size, queue_size=4096,
                            cache_size=0)
    svc.start()
    await closed_loop(svc, prompts, a.concurrency, 2, a.conversations)  # warm-up
    for c in (1, a.concurrency):
        lat = np.array(await closed_loop(svc, prompts, c, a.seconds, a.conversations))
        print(f"concurrency {c:>3}: {len(lat) / a.seconds:7.0f} classifications/s, latency p50 "
              f"{np.percentile(lat, 50) * 1000:6.2f} ms, p99 {np.percentile(lat, 99) * 1000:6.2f} ms, "
              f"mean batch {svc.stats.classified / max(svc.stats.batches, 1):.1f}")
        svc.stats.classified = svc.stats.batches = 0
    svc.stop()
    print(f"RSS added by the {embedder.name} model (after a first batch): "
          f"{(rss1 - rss0) / 2**20:.0f} MB; process RSS after the run {proc.memory_info().rss / 2**20:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
