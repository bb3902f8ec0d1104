"""Which encoder under the classifier: accuracy and cost of the candidates, trained the same way.

  .venv/bin/python bench/classifier_compare.py [--seconds 5] [--cascade-below 0.6]

Every variant is fitted by the shipped training code (`router/classify/training.py`: the same corpus,
lexical features, temperature and conversation gate) and differs only in the sentence encoder:

- static: the shipped hand distillation of all-MiniLM-L6-v2 (one vector per token, `[CLS] t [SEP]`);
- model2vec: model2vec's distillation of the same local MiniLM (mean-pooled token outputs, PCA to 256
  dimensions, SIF/Zipf token weighting), loaded offline from the package's model directory;
- contextual: the full transformer;
- cascade: static first, and the contextual model only for parts whose static confidence is below
  --cascade-below (its probabilities replace the static ones for those parts).

Two more rows show what the conversation gate is worth, with the shipped static model: the last user
turn alone, and all parts joined into one text.

Accuracy is measured on bench/data/classifier_eval.jsonl and the dev set bench/data/classifier_dev.jsonl
(single prompts and conversations separately). Cost: CPU time per prompt in batches of 32 on one thread,
and the real micro-batching service under 50 concurrent closed-loop requests with distinct prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from classifier_bench import closed_loop  # noqa: E402

from router.classify import training  # noqa: E402
from router.classify.conversation import Batch, Slots, fold  # noqa: E402
from router.classify.embedder import ContextualEmbedder, StaticEmbedder, default_model_path  # noqa: E402
from router.classify.head import Head  # noqa: E402
from router.classify.model import EmbeddingClassifier  # noqa: E402
from router.classify.prompt import prompt_parts  # noqa: E402
from router.classify.service import ClassifierService  # noqa: E402
from router.classify.taxonomy import Taxonomy  # noqa: E402

DATA = Path(__file__).parent / "data"
CACHE = Path("/tmp/cliffguard-compare")


class Model2VecEncoder:
    """model2vec's distillation of the same local model (offline), with its own tokenizer."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from model2vec import StaticModel

        path = CACHE / "model2vec-minilm-256"
        if not path.exists():
            from model2vec.distill import distill

            print("distilling with model2vec (once) ...", file=sys.stderr)
            distill(str(default_model_path()), pca_dims=256, device="cpu").save_pretrained(str(path))
        self.model = StaticModel.from_pretrained(str(path))
        self.name, self.max_tokens = "model2vec:all-MiniLM-L6-v2-pca256", 128
        self.vocab_size = int(self.model.tokenizer.get_vocab_size())

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, max_length=self.max_tokens), dtype=np.float32)

    def encode_with_ids(self, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
        ids = [e.ids[:512] for e in self.model.tokenizer.encode_batch(texts, add_special_tokens=False)]
        return self.encode(texts), ids


class Cascade:
    """Static first; the contextual classifier re-scores only the parts the static one is unsure of."""

    def __init__(self, cheap: EmbeddingClassifier, strong: EmbeddingClassifier, below: float) -> None:
        self.cheap, self.strong, self.below = cheap, strong, below
        self.escalated = self.parts = 0

    def classify(self, requests: list[tuple[str, ...]]) -> list[tuple[str, float]]:
        flat = [p for parts in requests for p in parts]
        probs = self.cheap.part_proba(flat)
        unsure = [i for i, p in enumerate(probs) if p.max() < self.below]
        self.parts += len(flat)
        self.escalated += len(unsure)
        if unsure:
            for i, p in zip(unsure, self.strong.part_proba([flat[i] for i in unsure]), strict=True):
                probs[i] = p
        grouped, i = [], 0
        for parts in requests:
            grouped.append(probs[i:i + len(parts)])
            i += len(parts)
        head = self.cheap.head
        state = fold(Batch.of(requests, grouped, len(head.classes)), head.gate, Slots.of(head.classes))
        return [(head.classes[int(s.argmax())], float(s.max())) for s in state]


class Reduced:
    """The shipped model reading one text per request instead of folding the parts."""

    def __init__(self, model: EmbeddingClassifier, how: str) -> None:
        self.model, self.how = model, how

    def classify(self, requests: list[tuple[str, ...]]) -> list[tuple[str, float]]:
        texts = [p[-1] if self.how == "last" else "\n".join(t for t in p if t) for p in requests]
        return self.model.classify([("", t) for t in texts])  # no system prompt: one user turn


def fitted(encoder: Any, taxonomy: Taxonomy) -> EmbeddingClassifier:
    path = CACHE / f"{encoder.name.replace(':', '_')}.npz"
    if path.exists():
        return EmbeddingClassifier(encoder, Head.load(path))
    t = time.perf_counter()
    head = training.fit(taxonomy.training_set(), encoder, progress=lambda s: print(f"  {encoder.name}: {s}",
                                                                                    file=sys.stderr))
    print(f"  fitted {encoder.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    head.save(path)
    return EmbeddingClassifier(encoder, head)


def load_rows(name: str) -> list[tuple[tuple[str, ...], str, str]]:
    rows = []
    for line in (DATA / name).read_text().splitlines():
        r = json.loads(line)
        msgs = r.get("messages") or [{"role": "user", "content": r["prompt"]}]
        parts = prompt_parts({"messages": msgs})
        rows.append((parts.model_parts(), r["category"], "conversation" if len(parts.users) > 1 else "single"))
    return rows


def accuracy(model: Any, rows: list[tuple[tuple[str, ...], str, str]], kind: str) -> float:
    sel = [r for r in rows if r[2] == kind]
    pred = model.classify([p for p, _, _ in sel])
    return sum(c == t for (c, _), (_, t, _) in zip(pred, sel, strict=True)) / len(sel)


def cpu_ms_per_prompt(model: Any, prompts: list[str]) -> float:
    batches = [[(f"{p} ({i})",) for p in prompts[i:i + 32]] for i in range(0, len(prompts) - 31, 32)]
    t = time.process_time()
    for b in batches:
        model.classify(b)
    return (time.process_time() - t) * 1000 / sum(len(b) for b in batches)


async def service_latency(model: Any, prompts: list[str], seconds: float) -> tuple[float, float]:
    svc = ClassifierService(model.classify, min_confidence=0.0, batch_size=32, queue_size=4096, cache_size=0)
    svc.start()
    await closed_loop(svc, prompts, 50, 1)
    lat = np.array(await closed_loop(svc, prompts, 50, seconds))
    svc.stop()
    return len(lat) / seconds, float(np.percentile(lat, 99) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--cascade-below", type=float, default=0.6)
    a = ap.parse_args()
    CACHE.mkdir(exist_ok=True)
    taxonomy = Taxonomy.build()
    static = fitted(StaticEmbedder(cache_dir=CACHE), taxonomy)
    variants: dict[str, Any] = {
        "static (shipped)": static,
        "model2vec": fitted(Model2VecEncoder(), taxonomy),
        "contextual": fitted(ContextualEmbedder(threads=1), taxonomy),
    }
    variants["cascade"] = Cascade(static, variants["contextual"], a.cascade_below)
    variants["static, last user turn only"] = Reduced(static, "last")
    variants["static, all parts joined into one text"] = Reduced(static, "joined")
    ev, dev = load_rows("classifier_eval.jsonl"), load_rows("classifier_dev.jsonl")
    prompts = [p[0] for p, _, _ in ev]
    print("| encoder | our set | dev single | dev conversations | CPU ms per prompt (batches of 32) "
          "| classifications/s at c=50 | p99 at c=50 |")
    print("|---|---|---|---|---|---|---|")
    for name, model in variants.items():
        inner = model.model if isinstance(model, Reduced) else model
        for m in (inner.cheap, inner.strong) if isinstance(inner, Cascade) else (inner,):
            m._memo_size = 0  # every part encoded: the cost of new prompts, not of a warm memo
        accs = [accuracy(model, ev, "single"), accuracy(model, dev, "single"), accuracy(model, dev, "conversation")]
        ms = cpu_ms_per_prompt(model, prompts)
        rate, p99 = asyncio.run(service_latency(model, prompts, a.seconds))
        extra = (f" ({model.escalated / max(model.parts, 1):.0%} of parts escalated)"
                 if isinstance(model, Cascade) else "")
        print(f"| {name}{extra} | {accs[0]:.1%} | {accs[1]:.1%} | {accs[2]:.1%} | {ms:.3f} | {rate:,.0f} | "
              f"{p99:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
