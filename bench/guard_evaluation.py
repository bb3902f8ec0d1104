"""Time of one evaluation of the default guards, as the controller runs it every `interval_s` in the worker
that leads: a rollout's whole counts and its recent window (error, empty-answer, feedback, TTFT and
latency guards; 80,000 requests on stable, 20,000 on the candidate, latencies spread over the edges).

    .venv/bin/python bench/guard_evaluation.py [--repeat 20]

Compare two trees by running it with `PYTHONPATH=<other tree>` (the script's own folder comes first on
the path, then PYTHONPATH, then the installed project).
"""

from __future__ import annotations

import argparse
import random
import time

from monitoring import guards as g
from monitoring.policy import RolloutPolicy


def counts(rng: random.Random, requests: int, error_rate: float) -> g.VersionCounts:
    c = g.VersionCounts()
    c.requests, c.errors, c.empty = requests, int(requests * error_rate), int(requests * 0.002)
    c.feedback, c.negative = requests // 50, requests // 500
    for _ in range(2000):  # histogram buckets: latencies spread over the guards' edges
        ttft, latency = rng.randint(3, 20), rng.randint(2, 25)
        c.ttft[ttft] = c.ttft.get(ttft, 0) + requests // 2000
        c.latency[latency] = c.latency.get(latency, 0) + requests // 2000
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(1)
    versions = {"stable": counts(rng, 80_000, 0.01), "candidate": counts(rng, 20_000, 0.012)}
    guards = RolloutPolicy().guards
    found = g.evaluate(guards, versions, "stable", "candidate", versions)  # warm-up
    started = time.perf_counter()
    for _ in range(args.repeat):
        g.evaluate(guards, versions, "stable", "candidate", versions)
    per = (time.perf_counter() - started) / args.repeat
    print(f"guards evaluated: {', '.join(sorted(found))}; {per * 1000:.1f} ms per evaluation "
          f"(mean of {args.repeat})")


if __name__ == "__main__":
    main()
