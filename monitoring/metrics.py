"""Prometheus metrics of the gateway.

Works in prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (as `cliffguard
serve` does), so `/metrics` reports the whole server, not one worker. Labels take only configured
names (aliases, versions), keeping cardinality bounded.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
    "Samples not queued: buffer overflow while Redis was unreachable, or over the global judge budget.",
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
    "1 when this process can reach Redis (min over processes).",
    multiprocess_mode="livemin",
)
STATE_REVISION = Gauge(
    "cliffguard_state_revision",
    "Rollout state revision loaded by this process (min over processes).",
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
ROLLOUT_PHASE = Gauge("cliffguard_rollout_phase", "1 for the alias's current phase.", ["alias", "phase"],
                      multiprocess_mode="mostrecent")
ROLLOUT_STAGE = Gauge("cliffguard_rollout_stage", "Index of the current stage.", ["alias"],
                      multiprocess_mode="mostrecent")
ROLLOUT_WEIGHT = Gauge("cliffguard_rollout_weight_ratio", "Candidate weight set by the rollout (0..1).", ["alias"],
                       multiprocess_mode="mostrecent")
ROLLOUT_PINNED = Gauge("cliffguard_rollout_pinned_categories", "Categories pinned to stable.", ["alias"],
                       multiprocess_mode="mostrecent")
CATEGORY_PAIRS = Gauge("cliffguard_category_judged_pairs", "Judged pairs in the current rollout.",
                       ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_OUTCOMES = Gauge("cliffguard_category_outcomes", "Wins, ties and losses of the candidate in the current "
                          "rollout.", ["alias", "category", "outcome"], multiprocess_mode="mostrecent")
CATEGORY_ESTIMATE = Gauge("cliffguard_category_estimate", "Observed P(win) - P(loss) of the candidate.",
                          ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_LOWER = Gauge("cliffguard_category_lower_bound", "Anytime-valid lower confidence bound of the estimate.",
                       ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_UPPER = Gauge("cliffguard_category_upper_bound", "Anytime-valid upper confidence bound of the estimate.",
                       ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_STATISTIC = Gauge("cliffguard_category_test_statistic", "log e-value of 'worse than tolerated'.",
                           ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_THRESHOLD = Gauge("cliffguard_category_test_threshold", "log(1/alpha_k): rollback at or above it.",
                           ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_PAIRS_NEEDED = Gauge("cliffguard_category_pairs_needed", "Estimated further pairs to a decision (-1: decided "
                              "or too close to call).", ["alias", "category"], multiprocess_mode="mostrecent")
CATEGORY_TOLERANCE = Gauge("cliffguard_category_tolerance", "The category's tolerance (the regression line is "
                           "minus this).", ["alias", "category"], multiprocess_mode="mostrecent")
GUARD_TRIPS = Counter("cliffguard_controller_guard_trips_total", "Rollbacks caused by an operational guard.",
                      ["alias", "guard"])
WEBHOOKS = Counter("cliffguard_webhooks_total", "Webhook deliveries by result.", ["result"])


def render() -> tuple[bytes, str]:
    """The exposition text for the whole server (all worker processes in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
