"""CPU per request of the frames between a worker and the classifier process (`router/classify/wire.py`),
on realistic prompts: a worker encodes a request and decodes its share of a reply, the process decodes the
request (through `FrameReader`, as from the socket) and encodes a reply per batch of 20. The standard
library's `json` on the same documents is printed beside it, for reference.

    .venv/bin/python bench/classifier_frames.py [--prompts FILE] [-n 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from router.classify.layers import Label
from router.classify.wire import FrameReader, parse_replies, parse_request, reply_frame, request_frame

BATCH = 20  # prompts per model batch in the classifier process under load (bench/cpu_per_request.py)


def per_request_us(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):  # the best of a few: the first pays for allocations
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return 1e6 * best / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="/tmp/cliffguard-bench-prompts.jsonl")
    ap.add_argument("-n", type=int, default=5000)
    a = ap.parse_args()
    texts = [json.loads(line)["prompt"] for line in Path(a.prompts).read_text().splitlines()[:a.n]]
    n = len(texts)
    parts = [("", t) for t in texts]  # the system slot (empty) and the user turn
    requests = b"".join(request_frame(i, p) for i, p in enumerate(parts))
    label = Label("coding", 0.83, "embedding")
    replies = [reply_frame([(i, label) for i in range(k, min(k + BATCH, n))]) for k in range(0, n, BATCH)]
    docs = [[i, list(p)] for i, p in enumerate(parts)]
    stdlib = [json.dumps(d, ensure_ascii=False) for d in docs]
    rows = [
        ("worker: encode a request", lambda: [request_frame(i, p) for i, p in enumerate(parts)]),
        ("process: read and decode requests", lambda: [parse_request(o) for o in FrameReader().feed(requests)]),
        ("process: encode replies", lambda: [reply_frame([(i, label) for i in range(k, min(k + BATCH, n))])
                                             for k in range(0, n, BATCH)]),
        ("worker: read and decode replies", lambda: [parse_replies(o) for o in FrameReader().feed(b"".join(replies))]),
        ("stdlib json: encode a request", lambda: [json.dumps(d, ensure_ascii=False) for d in docs]),
        ("stdlib json: decode a request", lambda: [json.loads(s) for s in stdlib]),
    ]
    print(f"{n} prompts (mean {sum(map(len, texts)) / n:.0f} chars), us of CPU per request:")
    for name, fn in rows:
        print(f"  {name:36s} {per_request_us(fn, n):6.2f}")


if __name__ == "__main__":
    main()
