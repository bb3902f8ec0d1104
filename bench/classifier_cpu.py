"""CPU per classification on realistic prompts, by batch size: the shipped model's `classify` on distinct
prompts from the shared harness's `make_prompts.py` (median 27 words, a tenth long documents), timed with
`time.process_time` (every thread of the process, so the tokenizer's own threads count too).

    .venv/bin/python bench/classifier_cpu.py [--prompts FILE] [--per-size 1500] [--parts]

`--parts` also times the stages of the model's own work per text, in batches of 8 and 32: the WordPiece
ids, the table's rows summed (the embedding), the embedding block's matmul and the lexical features.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from gateway.classification import load_model
from gateway.config import ClassifierConfig
from router.classify.embedder import StaticEmbedder
from router.classify.model import EmbeddingClassifier
from router.classify.prompt import prompt_parts

HARNESS = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="/tmp/cliffguard-bench-prompts.jsonl")
    ap.add_argument("--per-size", type=int, default=1500, help="prompts classified per batch size")
    ap.add_argument("--parts", action="store_true", help="also time the stages of the model per text")
    args = ap.parse_args()
    path = Path(args.prompts)
    if not path.exists():
        path.write_text(subprocess.run([sys.executable, str(HARNESS / "make_prompts.py"), "-n", "20000"],
                                       capture_output=True, text=True, check=True).stdout)
    _, model = load_model(ClassifierConfig())
    parts = [prompt_parts({"messages": [{"role": "user", "content": json.loads(line)["prompt"]}]}).model_parts()
             for line in path.read_text().splitlines()]
    i = 0
    for size in (1, 2, 4, 8, 16, 32, 64):
        done, t0 = 0, time.process_time()
        while done < args.per_size:
            batch = [parts[(i + k) % len(parts)] for k in range(size)]  # distinct prompts: no memo hits
            i += size
            model.classify(batch)
            done += size
        print(f"batch {size:3d}: {1e6 * (time.process_time() - t0) / done:7.1f} us of CPU per classification")
    if args.parts:
        texts = [p[-1] for p in parts]
        for size in (8, 32):
            print(f"batch {size:3d}, us per text: " + ", ".join(
                f"{k} {v:.1f}" for k, v in stages(model, texts, size, args.per_size).items()))


def stages(model: EmbeddingClassifier, texts: list[str], size: int, n: int) -> dict[str, float]:
    """CPU per text of the stages of the model's work: the WordPiece ids, the table's rows summed (the
    embedding's time less a second, warm, timing of the ids it includes), the embedding block's matmul and
    the lexical features."""
    emb, head = model.embedder, model.head
    if not isinstance(emb, StaticEmbedder):
        raise SystemExit("--parts times the static encoder's stages")
    spent = dict.fromkeys(("WordPiece ids", "rows summed", "matmul", "lexical features"), 0.0)
    done = 0
    for i in range(0, n, size):
        batch = texts[i:i + size]
        t0 = time.process_time()
        ids = emb.token_ids(batch)
        t1 = time.process_time()
        vecs, _ = emb.encode_with_ids(batch)
        t2 = time.process_time()
        emb.token_ids(batch)
        t3 = time.process_time()
        vecs @ head.coef.T
        t4 = time.process_time()
        if head.lexical is not None and head.lex_coef is not None:
            head.lexical.logits(ids, head.lex_coef)
        t5 = time.process_time()
        for k, dt in zip(spent, (t1 - t0, (t2 - t1) - (t3 - t2), t4 - t3, t5 - t4), strict=True):
            spent[k] += dt
        done += len(batch)
    return {k: 1e6 * v / done for k, v in spent.items()}

if __name__ == "__main__":
    main()
