"""CPU per classification on realistic prompts, by batch size: the shipped model's `classify` on distinct
prompts from the shared harness's `make_prompts.py` (median 27 words, a tenth long documents), timed with
`time.process_time` (every thread of the process, so the tokenizer's own threads count too).

    .venv/bin/python bench/classifier_cpu.py [--prompts FILE] [--per-size 1500]
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
from router.classify.prompt import prompt_parts

HARNESS = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="/tmp/cliffguard-bench-prompts.jsonl")
    ap.add_argument("--per-size", type=int, default=1500, help="prompts classified per batch size")
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


if __name__ == "__main__":
    main()
