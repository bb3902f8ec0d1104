"""Operational guards: per rollout and version, counts of requests, errors, empty answers, TTFT and latency
histograms, and the requests the candidate served per category (its exposure).

Gateways and judge workers count in memory (a dict increment) and flush to Redis every second in the
background (`GuardCounters`); sums are added with HINCRBY, so any number of processes contribute. The
controller compares the versions (`evaluate`) with anytime-valid bounds on each rate, so a guard trips only
on evidence: the candidate's rate is above stable's * ratio + slack even at the candidate's lower bound
and stable's upper bound. The TTFT and latency guards compare, at every bucket edge, the share of
requests slower than the edge (the error budget split over the edges): a candidate one bucket slower in
its tail does not trip them, a real slowdown does.

Errors and empty answers are also counted per minute (`window_key`) and compared over the last
`Guards.window_minutes`: over a whole rollout, a candidate that dies after hours of good service needs
errors in proportion to everything it served before its rate looks wrong; over the window it trips as
fast as at the start. The window's comparison has its own half of the guard's error budget. (It is
repeated on new data every minute, so over a very long rollout its false-trip rate is not bounded by
alpha; the ratio and slack keep it negligible for versions that do not differ.)
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from redis.exceptions import RedisError

from monitoring.flushing import PeriodicFlush
from monitoring.policy import Guard, Guards
from monitoring.sequential import rate_bounds

# bucket upper edges in seconds, 1.25x apart (2x-apart edges made a one-bucket difference look like a
# 2x slowdown); the last bucket is everything slower
TTFT_EDGES = tuple(round(0.01 * 1.25 ** i, 4) for i in range(38))  # 10 ms .. ~48 s
LATENCY_EDGES = tuple(round(0.025 * 1.25 ** i, 4) for i in range(45))  # 25 ms .. ~5 min
TTL_S = 7 * 86400
WINDOW_TTL_S = 3600  # per-minute counters: the longest window anyone would set, and some
WINDOWED = ("requests", "errors", "empty")


def key(prefix: str, alias: str, rollout_id: str) -> str:
    return f"{prefix}:guards:{alias}:{rollout_id}"


def window_key(prefix: str, alias: str, rollout_id: str, minute: int) -> str:
    return f"{prefix}:guardwin:{alias}:{rollout_id}:{minute}"


def window_keys(prefix: str, alias: str, rollout_id: str, now: float, minutes: int) -> list[str]:
    """The last `minutes` whole minutes and the current one."""
    current = int(now // 60)
    return [window_key(prefix, alias, rollout_id, m) for m in range(current - minutes, current + 1)]


class GuardCounters(PeriodicFlush):
    def __init__(self, redis: Any, prefix: str, flush_s: float = 1.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.flush_s = flush_s
        self._pending: Counter[tuple[str, str, str]] = Counter()

    def record(self, alias: str, rollout_id: str, version: str, *, error: bool, empty: bool,
               ttft_s: float | None, latency_s: float | None = None, category: str | None = None) -> None:
        """One request (or shadow generation) of `version`. `category` is given for requests the version
        served to a user: the candidate's exposure."""
        k = key(self.prefix, alias, rollout_id)
        w = window_key(self.prefix, alias, rollout_id, int(time.time() // 60))
        p = self._pending
        p[(k, version, "requests")] += 1
        p[(w, version, "requests")] += 1
        if error:
            p[(k, version, "errors")] += 1
            p[(w, version, "errors")] += 1
        if empty:
            p[(k, version, "empty")] += 1
            p[(w, version, "empty")] += 1
        if ttft_s is not None:
            p[(k, version, f"ttft:{bisect_left(TTFT_EDGES, ttft_s)}")] += 1
        if latency_s is not None:
            p[(k, version, f"lat:{bisect_left(LATENCY_EDGES, latency_s)}")] += 1
        if category is not None:
            p[(k, version, f"cat:{category}")] += 1

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, Counter()
        pipe = self.redis.pipeline(transaction=False)
        for (k, version, f), n in batch.items():
            pipe.hincrby(k, f"{version}:{f}", n)
        for k in {k for k, _, _ in batch}:  # after the writes: EXPIRE on a key not yet there does nothing
            pipe.expire(k, WINDOW_TTL_S if k.startswith(f"{self.prefix}:guardwin:") else TTL_S)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            batch.update(self._pending)  # keep them for the next try
            self._pending = batch
            raise


@dataclass
class VersionCounts:
    requests: int = 0
    errors: int = 0
    empty: int = 0
    ttft: dict[int, int] = field(default_factory=dict)  # bucket index -> count
    latency: dict[int, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # category -> requests served to users
    feedback: int = 0  # user feedback on this version's answers (POST /v1/feedback)
    negative: int = 0  # of which negative (thumbs down, or 1-2 of 5)
    regenerated: int = 0  # answers the user asked again for (the same conversation resent)


def parse(raw: Mapping[Any, Any]) -> dict[str, VersionCounts]:
    """From the Redis hash (`<version>:<field>` -> count) to counts per version."""
    out: dict[str, VersionCounts] = {}
    for f, v in raw.items():
        name = f.decode() if isinstance(f, bytes) else str(f)
        version, _, rest = name.partition(":")
        c = out.setdefault(version, VersionCounts())
        kind, _, arg = rest.partition(":")
        n = int(v)
        if kind in ("requests", "errors", "empty", "feedback", "negative", "regenerated"):
            setattr(c, kind, n)
        elif kind == "ttft" and arg.isdigit():
            c.ttft[int(arg)] = n
        elif kind == "lat" and arg.isdigit():
            c.latency[int(arg)] = n
        elif kind == "cat":
            c.served[arg] = n
    return out


@dataclass(frozen=True)
class GuardResult:
    name: str
    tripped: bool
    candidate: float  # the candidate's rate (at the most telling edge, for ttft and latency)
    candidate_lower: float
    stable: float
    stable_upper: float
    limit: float  # stable_upper * ratio + slack: what candidate_lower must exceed to trip
    candidate_requests: int
    stable_requests: int
    edge_s: float | None = None  # for ttft and latency: "share of requests slower than edge_s"
    window_minutes: int | None = None  # counts of the last minutes only (None: the whole rollout)

    @property
    def detail(self) -> str:
        what = f"share slower than {self.edge_s:g} s" if self.edge_s is not None else "rate"
        if self.window_minutes is not None:
            what += f" over the last {self.window_minutes} min"
        return (f"{self.name}: candidate {what} {self.candidate:.4g} (lower bound {self.candidate_lower:.4g}) "
                f"vs limit {self.limit:.4g} (stable {self.stable:.4g}, upper bound {self.stable_upper:.4g}; "
                f"{self.candidate_requests} vs {self.stable_requests} "
                f"{'feedback' if self.name == 'negative_feedback' else 'requests'})")


def _compare(name: str, g: Guard, kc: Any, nc: Any, ks: Any, ns: Any, alpha: float,
             edges: tuple[float, ...] | None = None, window_minutes: int | None = None) -> GuardResult | None:
    """Rates k/n of the candidate and stable (arrays over edges for the tail guards)."""
    kc, nc, ks, ns = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (kc, nc, ks, ns))
    if not kc.size or int(nc.max()) < g.min_requests or int(ns.max()) < g.min_requests:
        return None
    per = alpha / kc.size  # Bonferroni over the edges compared
    c_lo, _ = rate_bounds(kc, nc, per)
    _, s_hi = rate_bounds(ks, ns, per)
    limit = s_hi * g.ratio + g.slack
    i = int(np.argmax(c_lo - limit))  # the most telling edge
    return GuardResult(name, bool(c_lo[i] > limit[i]), float(kc[i] / nc[i]), float(c_lo[i]), float(ks[i] / ns[i]),
                       float(s_hi[i]), float(limit[i]), int(nc[i]), int(ns[i]), edges[i] if edges else None,
                       window_minutes)


def _tail(hist_c: dict[int, int], hist_s: dict[int, int], edges: tuple[float, ...]
          ) -> tuple[list[int], int, list[int], int, tuple[float, ...]]:
    """Counts above each edge that both versions reached (edges below everyone's fastest say nothing)."""
    nc, ns = sum(hist_c.values()), sum(hist_s.values())
    above_c, above_s, kept = [], [], []
    cum_c = cum_s = 0
    for i, e in enumerate(edges):
        cum_c += hist_c.get(i, 0)
        cum_s += hist_s.get(i, 0)
        if cum_c + cum_s == 0 or (cum_c == nc and cum_s == ns):
            continue  # nobody faster than e, or everybody: no information at this edge
        above_c.append(nc - cum_c)
        above_s.append(ns - cum_s)
        kept.append(e)
    return above_c, nc, above_s, ns, tuple(kept)


def merge(hashes: list[Mapping[Any, Any]]) -> dict[str, VersionCounts]:
    """The per-minute hashes of a window, summed (only requests, errors and empty answers are windowed)."""
    out: dict[str, VersionCounts] = {}
    for part in hashes:
        for version, c in parse(part).items():
            total = out.setdefault(version, VersionCounts())
            for attr in WINDOWED:
                setattr(total, attr, getattr(total, attr) + getattr(c, attr))
    return out


def evaluate(guards: Guards, counts: dict[str, VersionCounts], stable: str, candidate: str,
             recent: dict[str, VersionCounts] | None = None) -> dict[str, GuardResult]:
    """Every active guard with enough data, candidate against stable. `recent`: the counts of the last
    `window_minutes`, for the error and empty-answer guards (each comparison with half the budget)."""
    c, s = counts.get(candidate, VersionCounts()), counts.get(stable, VersionCounts())
    out: dict[str, GuardResult] = {}
    for name, g in guards.active().items():
        if name in ("error_rate", "empty_rate"):
            attr = "errors" if name == "error_rate" else "empty"
            if recent is None:
                r = _compare(name, g, getattr(c, attr), c.requests, getattr(s, attr), s.requests, guards.alpha)
            else:
                rc, rs = recent.get(candidate, VersionCounts()), recent.get(stable, VersionCounts())
                found = [x for x in (
                    _compare(name, g, getattr(c, attr), c.requests, getattr(s, attr), s.requests, guards.alpha / 2),
                    _compare(name, g, getattr(rc, attr), rc.requests, getattr(rs, attr), rs.requests,
                             guards.alpha / 2, window_minutes=guards.window_minutes),
                ) if x is not None]
                # the tripped one if any, else the whole rollout's (the one shown while all is well)
                r = next((x for x in found if x.tripped), found[0] if found else None)
        elif name == "negative_feedback":
            r = _compare(name, g, c.negative, c.feedback, s.negative, s.feedback, guards.alpha)
        else:
            hc, hs, edges = (c.ttft, s.ttft, TTFT_EDGES) if name == "ttft" else (c.latency, s.latency, LATENCY_EDGES)
            kc, nc, ks, ns, kept = _tail(hc, hs, edges)
            r = _compare(name, g, kc, [nc] * len(kc), ks, [ns] * len(ks), guards.alpha, kept) if kept else None
        if r is not None:
            out[name] = r
    return out


def quantile(hist: dict[int, int], edges: tuple[float, ...], q: float) -> float | None:
    """A histogram's q-quantile, read as the upper edge of its bucket (for display)."""
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for i in range(len(edges) + 1):
        seen += hist.get(i, 0)
        if seen >= q * total:
            return edges[min(i, len(edges) - 1)]
    return edges[-1]
