"""Fault injection under load (issue 12): kill -9 and restart, one at a time, Redis, a judge worker, a
gateway worker, the controller leader, the stable backend and the candidate backend, while concurrent
openai clients (distinct users, plain and streamed) use a live rollout with sampling at its defaults.
Prints a table per fault: failed requests (in flight at the fault, of which streams already streaming,
and new), samples accepted / judged / lost / double-counted by gateway request id, recovery times, and
what the rollout did. The harness is tests/support/chaos.py; tests/chaos runs a short version in CI.

Starts everything itself (a redis-server, `cliffguard serve` with 2 workers, `cliffguard worker`, scripted
backends and judge as processes); needs redis-server on PATH.
  .venv/bin/python bench/chaos.py [--clients 16] [--users 1000] [--load-s 20] [--redis-down-s 6] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support is the harness

from tests.support.chaos import Chaos, Phase, faults  # noqa: E402

out = Console(width=None if sys.stdout.isatty() else 220)


def table(phases: list[Phase], title: str) -> Table:
    t = Table(title=title)
    for col in ("fault (kill -9)", "down s", "requests", "failed in flight (streaming)", "failed new",
                "samples taken", "accepted (while down)", "over budget", "judged", "dead", "lost", "double-counted",
                "recovery", "rollout"):
        t.add_column(col)
    for p in phases:
        t.add_row(p.fault, f"{p.down_s:.1f}", str(p.requests), f"{p.failed_in_flight} ({p.failed_streaming})",
                  f"{p.failed_new}" + (f" (stable arm: {p.failed_new_stable})" if p.failed_new else ""),
                  str(p.sampled), f"{p.accepted} ({p.accepted_while_down})", str(p.over_budget), str(p.judged),
                  str(p.dead), str(p.lost), str(p.double_counted),
                  "; ".join(f"{k} {v:.1f}s" for k, v in p.recovery.items()) or "-", p.rollout)
    return t


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--load-s", type=float, default=20.0, help="load before and after each fault, each")
    ap.add_argument("--redis-down-s", type=float, default=6.0)
    ap.add_argument("--down-s", type=float, default=3.0, help="how long a killed backend or judge worker stays down")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    phases: list[Phase] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cg-chaos-") as tmp:
        out.print("[bold]starting[/] redis-server, cliffguard serve (2 workers), a judge worker, backends, judge")
        async with Chaos(Path(tmp), clients=a.clients, users=a.users) as chaos:
            for name, fault in faults(a.redis_down_s, a.down_s):
                out.print(f"[bold]{name}[/]: {a.load_s:g}s of load, kill -9, restart, {a.load_s:g}s more, drain")
                phase = await chaos.run_phase(name, fault, before_s=a.load_s, after_s=a.load_s)
                phases.append(phase)
                out.print(table([phase], f"{name} ({phase.seconds:.0f}s)"))
                for err in phase.errors:
                    out.print(f"  [dim]{err}[/]", highlight=False)
    out.print(table(phases, f"Fault injection: {a.clients} clients, {a.users} users, "
                            f"{time.monotonic() - t0:.0f}s in all"))
    if a.json:
        a.json.write_text(json.dumps([dataclasses.asdict(p) for p in phases], indent=1))


if __name__ == "__main__":
    asyncio.run(main())
