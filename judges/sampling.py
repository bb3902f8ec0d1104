"""Which answered requests go to the judges. Pure apart from per-process counters.

Deterministic from the gateway's own request id (random, never the client's): a request is a candidate
when hash(request id) falls below its category's rate, or when its category has had fewer than
`min_per_window` samples in the current window (so rare categories still get evidence).

Stratified (`stratify`, the default): each category's rate is `default_rate` scaled by how rare the
category is in this process's recent traffic (this window and the last), so every category gets about
the same number of samples while the overall rate stays `default_rate`: a rare category reaches its
rollout gate as soon as a common one (capped at 1). The mix is the only input, never an outcome, so the
judged pairs of a category stay a fair sample of that category's traffic. A rate set in `rates` wins.

The global budget (per second, per day) decides which candidates are sampled, by the second each was
answered in. `LocalBudget` stops a process early, once it alone has reached the budget of a second or a
day (a candidate past that could never be admitted); Redis then admits candidates in order against the
counters of their own second and day, across all replicas (judges/queue.py). A Redis outage delays that
admission but does not change it, so an outage loses nothing the budget would have taken.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_rate: float = Field(0.05, ge=0, le=1, description="share of answered requests sampled")
    rates: dict[str, float] = Field(default_factory=dict, description="per-category rate (rare ones higher)")
    stratify: bool = Field(True, description="sample rare categories more, common ones less, so each gets about "
                                             "as many judged pairs (overall rate unchanged)")
    min_per_window: int = Field(5, ge=0, description="sample at least this many per category per window")
    window_s: float = Field(300.0, gt=0)
    max_per_second: int = Field(10, ge=1, description="global budget, all replicas: samples per second answered")
    max_per_day: int = Field(100_000, gt=0, description="global budget, all replicas")
    opt_out_header: str = Field("x-cliffguard-no-sample", description="a client sending it is never sampled")
    # bounded repetitions and a start condition keep these linear: an unbounded `[\w.+-]+@` retried at every
    # position of a long run of word characters took 0.8 s per 20 KB (quadratic), on the event loop
    redact_patterns: list[str] = Field(
        default_factory=lambda: [r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+",
                                 r"\b\d(?:[ -]?\d){12,18}\b"],
        description="regexes replaced by [REDACTED] in everything stored (default: emails, card-like numbers); "
                    "keep repetitions bounded, they run on every stored string")
    redact_hook: str | None = Field(None, description="'module:function' taking and returning each stored text")
    buffer_size: int = Field(10_000, ge=1, description="samples held in memory while Redis is unreachable "
                                                       "(past it the oldest is lost, counted and alerted)")

    @field_validator("rates")
    @classmethod
    def _rates_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: r for k, r in v.items() if not 0 <= r <= 1}
        if bad:
            raise ValueError(f"rates must be within [0, 1]: {bad}")
        return v

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regex {p!r}: {e}") from None
        return v


def unit_hash(request_id: str) -> float:
    """A stable number in [0, 1) from the request id."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big") / 2**64


@dataclass
class Sampler:
    cfg: SamplingConfig
    clock: Callable[[], float] = time.monotonic
    _window_start: float = field(default=0.0, init=False)
    _window_counts: dict[str, int] = field(default_factory=dict, init=False)
    _traffic: dict[str, int] = field(default_factory=dict, init=False)  # answered requests, this window
    _last_traffic: dict[str, int] = field(default_factory=dict, init=False)  # and the window before

    def rate(self, category: str) -> float:
        if category in self.cfg.rates:
            return self.cfg.rates[category]
        if not self.cfg.stratify:
            return self.cfg.default_rate
        mix = {c: self._last_traffic.get(c, 0) + self._traffic.get(c, 0)
               for c in {*self._last_traffic, *self._traffic}}
        total, seen = sum(mix.values()), mix.get(category, 0)
        if not seen:  # no mix yet: the plain rate
            return self.cfg.default_rate
        # equal allocation: category share 1/K of the samples, at the same overall rate
        return min(1.0, self.cfg.default_rate * total / (len(mix) * seen))

    def decide(self, request_id: str, category: str, opted_out: bool = False) -> bool:
        now = self.clock()
        if now - self._window_start >= self.cfg.window_s:
            self._window_start, self._window_counts = now, {}
            self._last_traffic, self._traffic = self._traffic, {}
        self._traffic[category] = self._traffic.get(category, 0) + 1
        if opted_out:
            return False
        seen = self._window_counts.get(category, 0)
        take = unit_hash(request_id) < self.rate(category) or seen < self.cfg.min_per_window
        if take:
            self._window_counts[category] = seen + 1
        return take


@dataclass
class LocalBudget:
    """This process's view of the global budget: once it alone has taken `per_second` candidates in a
    second (or `per_day` in a day), Redis would refuse the rest of that second (day) anyway, so they are
    never buffered. Keeps a Redis outage's buffer to at most the budget's worth of samples."""

    per_second: int
    per_day: int
    _second: int = field(default=-1, init=False)
    _in_second: int = field(default=0, init=False)
    _day: int = field(default=-1, init=False)
    _in_day: int = field(default=0, init=False)

    def take(self, now: float) -> bool:
        second, day = int(now), int(now // 86400)
        if second != self._second:
            self._second, self._in_second = second, 0
        if day != self._day:
            self._day, self._in_day = day, 0
        if self._in_second >= self.per_second or self._in_day >= self.per_day:
            return False
        self._in_second += 1
        self._in_day += 1
        return True
