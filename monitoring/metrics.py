"""Prometheus metrics of the gateway.

Works in prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (as `cliffguard
serve` does), so `/metrics` reports the whole server, not one worker. Each gauge says how its workers'
values merge: `live*` modes count only running workers (the supervisor in gateway/processes/supervisor.py
removes a dead worker's files), `mostrecent` takes the last write (the controller's leader's view).
Labels take only configured names (aliases, versions), keeping cardinality bounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import values as _values
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_pid = os.getpid()


def _process_id() -> int:
    return _pid


def _forked() -> None:
    global _pid
    _pid = os.getpid()


# In multiprocess mode every write of a value asks the kernel for the process id (to notice a fork): ten
# or so system calls per request, 5% of a worker's CPU. The id is kept here instead and renewed on fork,
# through the library's own hook (`MultiProcessValue(process_identifier)`); set before any metric exists.
if getattr(_values.ValueClass, "_multiprocess", False):
    os.register_at_fork(after_in_child=_forked)
    _values.ValueClass = _values.MultiProcessValue(process_identifier=_process_id)  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)

REQUESTS = Counter(
    "cliffguard_requests_total",
    "Requests answered, by alias, serving version, arm, capability category, endpoint and HTTP status.",
    ["alias", "version", "arm", "category", "endpoint", "status"],
)
REQUEST_LATENCY = Histogram(
    "cliffguard_request_duration_seconds",
    "Time from request received to last byte sent.",
    ["alias", "version", "arm", "category", "stream"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "cliffguard_ttft_seconds",
    "Time to first token of streamed answers (first content chunk), measured at the gateway.",
    ["alias", "version", "arm", "category"],
    buckets=_LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "cliffguard_gateway_overhead_seconds",
    "Time spent in the gateway itself before the response started (excludes the backend's time).",
    ["alias"],
    buckets=_OVERHEAD_BUCKETS,
)
TOKENS = Counter(
    "cliffguard_tokens_total",
    "Tokens reported by the backend's usage, by kind (prompt, completion).",
    ["alias", "version", "arm", "category", "kind"],
)
CLASSIFICATIONS = Counter(
    "cliffguard_classifications_total",
    "Requests labelled, by category and the layer that decided (explicit, rule, embedding, threshold, "
    "disabled, unclassified = overloaded or too slow).",
    ["category", "layer"],
)
CLASSIFIER_BATCH_SIZE = Histogram(
    "cliffguard_classifier_batch_size",
    "Prompts per model batch (micro-batching of concurrent requests).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
CLASSIFIER_BATCH_SECONDS = Histogram(
    "cliffguard_classifier_batch_seconds",
    "Model time per batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
# -- classifier health, per alias and arm ------------------------------------------------------------
# The category mix and the shares of `other` and `unclassified` per alias and arm come from
# cliffguard_requests_total (it carries alias, arm and category); this adds how sure the labels were.
CLASSIFIER_CONFIDENCE = Histogram(
    "cliffguard_classifier_confidence",
    "Confidence of each request's label, by alias, arm and the layer that decided (explicit and rule "
    "labels are 1, unclassified 0; the model's are calibrated probabilities).",
    ["alias", "arm", "layer"],
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
UPSTREAM_ERRORS = Counter(
    "cliffguard_upstream_errors_total",
    "Backend failures: connect, timeout, http_5xx, midstream, protocol.",
    ["alias", "version", "reason"],
)
FALLBACKS = Counter(
    "cliffguard_fallbacks_total",
    "Candidate requests retried on stable after a failure before the first byte.",
    ["alias", "from_version", "to_version", "reason"],
)
PIN_ROUTED = Counter(
    "cliffguard_pinned_to_stable_total",
    "Candidate-arm requests sent to stable because their category is pinned, or because the label was not "
    "ready within pin_wait_ms (label_late: fail closed).",
    ["alias", "reason"],
)
CLIENT_DISCONNECTS = Counter(
    "cliffguard_client_disconnects_total",
    "Requests whose client went away before the answer finished (upstream request cancelled).",
    ["alias", "version"],
)
SAMPLES = Counter(
    "cliffguard_samples_total",
    "Answered requests sampled for judging (pushed to the queue buffer).",
    ["alias", "category"],
)
SAMPLES_DROPPED = Counter(
    "cliffguard_samples_dropped_total",
    "Samples lost: the gateway's buffer overflowed (Redis unreachable too long), or a process stopping with "
    "Redis unreachable could not write them to data_dir. Alerted (CliffguardSamplesLost).",
    ["reason"],
)
SAMPLES_QUEUED = Counter(
    "cliffguard_samples_queued_total",
    "Samples appended to the Redis judge stream.",
)
REJECTED = Counter(
    "cliffguard_rejected_requests_total",
    "Requests refused by the gateway before routing, by reason.",
    ["reason"],
)
IN_FLIGHT = Gauge(
    "cliffguard_in_flight_requests",
    "Requests being served now.",
    ["alias"],
    multiprocess_mode="livesum",
)
REDIS_UP = Gauge(
    "cliffguard_redis_up",
    "1 when every worker of this server can reach Redis (min over running workers).",
    multiprocess_mode="livemin",
)
STATE_REVISION = Gauge(
    "cliffguard_state_revision",
    "Rollout state revision loaded by the server's workers (the oldest, over running workers).",
    multiprocess_mode="livemin",
)
CANDIDATE_WEIGHT = Gauge(
    "cliffguard_candidate_weight_ratio",
    "Share of traffic routed to the candidate (0..1), as this process sees it.",
    ["alias"],
    multiprocess_mode="livemax",
)


# -- the judge worker (`cliffguard worker`) ---------------------------------------------------------

JUDGE_CALLS = Counter(
    "cliffguard_judge_calls_total",
    "Calls to the judge model, by mode (pairwise, single) and result (ok, error).",
    ["mode", "result"],
)
JUDGE_LATENCY = Histogram(
    "cliffguard_judge_latency_seconds",
    "Latency of one judge call.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JUDGE_FAILURES = Counter(
    "cliffguard_judge_failures_total",
    "Failed attempts at judging a sample, by reason (generation_*, judge_*, parse, version_missing).",
    ["reason"],
)
JUDGE_PARSE_FAILURES = Counter(
    "cliffguard_judge_parse_failures_total",
    "Judge answers without a clean verdict (counted as failures, never as a win, loss or tie).",
)
JUDGE_SKIPPED = Counter(
    "cliffguard_judge_skipped_total",
    "Pairs recorded without a judge call, by reason (identical: both answers the same, recorded as a tie).",
    ["reason"],
)
JUDGED_PAIRS = Counter(
    "cliffguard_judged_pairs_total",
    "Judged pairs by alias, candidate version, category and outcome for the candidate (win, tie, loss).",
    ["alias", "candidate", "category", "outcome"],
)
POSITION_INCONSISTENT = Counter(
    "cliffguard_judge_position_inconsistent_total",
    "Pairs whose two orders (A/B, B/A) disagreed: position bias, counted as ties.",
    ["alias", "category"],
)
SINGLE_RATINGS = Histogram(
    "cliffguard_judge_rating",
    "Single-answer ratings (1-10) where there is no candidate to compare against.",
    ["alias", "category"],
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
)
JUDGE_DEAD_LETTERS = Counter(
    "cliffguard_judge_dead_letters_total",
    "Samples moved to the dead-letter stream after max_attempts failures.",
)
JUDGE_QUEUE_LENGTH = Gauge(
    "cliffguard_judge_queue_length",
    "Samples not yet judged: undelivered plus pending in the consumer group.",
    multiprocess_mode="max",
)
JUDGE_QUEUE_LAG = Gauge(
    "cliffguard_judge_queue_lag_seconds",
    "Age of the oldest sample not yet judged.",
    multiprocess_mode="max",
)


# -- the rollout controller (leader only; `mostrecent` so a server reports the leader's view) --------

CONTROLLER_LEADER = Gauge("cliffguard_controller_leader", "1 in the process that leads the controller.",
                          multiprocess_mode="livemax")
CONTROLLER_DECISIONS = Counter("cliffguard_controller_decisions_total",
                               "Controller actions by alias and action (promote, complete, rollback, pin_category, "
                               "inconclusive).", ["alias", "action"])
CONTROLLER_LAST_DECISION = Gauge("cliffguard_controller_last_decision_timestamp_seconds",
                                 "Time of the last controller action per alias.", ["alias"],
                                 multiprocess_mode="mostrecent")
ROLLOUT_TRANSITIONS = Counter("cliffguard_rollout_transitions_total",
                              "Rollout transitions by alias, transition (rollout_started, promoted, completed, "
                              "rolled_back, aborted, paused, resumed, inconclusive, category_pinned, "
                              "category_unpinned, split_set) and who made it (controller, operator).",
                              ["alias", "transition", "by"])
# The rollout's state and the controller's per-category analysis are exported on scrape from the live
# state and the stored analysis (monitoring/rollout_metrics.py), so they vanish when a rollout ends and
# its alerts resolve.
GUARD_TRIPS = Counter("cliffguard_controller_guard_trips_total", "Rollbacks caused by an operational guard.",
                      ["alias", "guard"])
WEBHOOKS = Counter("cliffguard_webhooks_total", "Webhook deliveries by result.", ["result"])


# -- judging: sample durability and recovery (issue 12) -----------------------------------------------

SAMPLES_OVER_BUDGET = Counter(
    "cliffguard_samples_over_budget_total",
    "Sampling candidates not taken because the global budget of the second (or day) they were answered in "
    "was spent. Not a loss: the budget decides what is sampled.",
)
SAMPLE_BUFFER = Gauge(
    "cliffguard_sample_buffer_length",
    "Samples held in gateway memory for Redis (they wait while it is unreachable or the stream is full).",
    multiprocess_mode="livesum",
)
SAMPLES_SPILLED = Counter(
    "cliffguard_samples_spilled_total",
    "Samples written to data_dir by a gateway process stopping while Redis was unreachable.",
)
SAMPLES_REPLAYED = Counter(
    "cliffguard_samples_replayed_total",
    "Samples read back from data_dir at start (written by a process that stopped while Redis was unreachable).",
)
JUDGE_RECLAIMED = Counter(
    "cliffguard_judge_reclaimed_total",
    "Pending samples a worker took over: from a worker that is gone (no heartbeat), or idle past claim_idle_s.",
    ["reason"],
)


@lru_cache(maxsize=65_536)
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, cached: `labels()` validates and builds its key on every call, about a
    microsecond each, ten times per request on the hot path. Label values are configured names, so the
    cache stays small."""
    return metric.labels(*labels)


def render(*extra: Collector) -> tuple[bytes, str]:
    """The exposition text for the whole server (all worker processes in multiprocess mode), plus the
    `extra` collectors of this process (values computed on scrape)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry.register(_Everything(REGISTRY))
    for c in extra:
        registry.register(c)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Everything(Collector):
    """The process's default registry, inside a per-scrape registry (single-process mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


# -- user feedback (POST /v1/feedback) and regenerates ---------------------------------------------------

FEEDBACK = Counter(
    "cliffguard_feedback_total",
    "User feedback on answers, by alias, the arm and version that answered, category and sentiment "
    "(positive: thumbs up or 4-5; negative: thumbs down or 1-2; neutral: 3). Counted once per request id.",
    ["alias", "arm", "version", "category", "sentiment"],
)
REGENERATIONS = Counter(
    "cliffguard_regenerations_total",
    "Answers the user asked for again (the same conversation resent within feedback.regenerate_window_s), by "
    "the arm and version of the answer that was regenerated, and category.",
    ["alias", "arm", "version", "category"],
)
