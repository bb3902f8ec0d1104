"""Classifier evaluation: accuracy, per-category precision/recall, the confusion matrix and calibration
(accuracy per confidence bucket), overall and per kind of row (single prompts, conversations). Pure."""

from __future__ import annotations

from collections import Counter
from typing import Any

BUCKETS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


def row_kind(roles: list[str]) -> str:
    """`conversation` for more than one user turn or a system prompt (the model then folds several parts),
    else `single`."""
    users = sum(r == "user" for r in roles)
    return "conversation" if users > 1 or any(r in ("system", "developer") for r in roles) else "single"


def evaluate(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    if len(truth) != len(predicted) or not truth:
        raise ValueError("need equally many (and at least one) true and predicted labels")
    cats = sorted(set(truth) | set(predicted))
    pairs = Counter(zip(truth, predicted, strict=True))
    per: dict[str, dict[str, float | int]] = {}
    for c in cats:
        tp = pairs[(c, c)]
        support = sum(n for (t, _), n in pairs.items() if t == c)
        predicted_c = sum(n for (_, p), n in pairs.items() if p == c)
        per[c] = {"precision": round(tp / predicted_c, 4) if predicted_c else 0.0,
                  "recall": round(tp / support, 4) if support else 0.0, "support": support}
    return {
        "n": len(truth),
        "accuracy": round(sum(pairs[(c, c)] for c in cats) / len(truth), 4),
        "per_category": per,
        "confusion": {t: {p: pairs[(t, p)] for p in cats if pairs[(t, p)]} for t in cats},
    }


def calibration(correct: list[bool], confidence: list[float]) -> dict[str, Any]:
    """Observed accuracy per bucket of reported confidence, and the expected calibration error (the
    gap between the two, weighted by bucket size)."""
    buckets = []
    gap = 0.0
    for lo, hi in zip(BUCKETS, BUCKETS[1:], strict=False):
        idx = [i for i, c in enumerate(confidence) if lo <= c < hi or (hi == 1.0 and c == 1.0)]
        if not idx:
            continue
        acc = sum(correct[i] for i in idx) / len(idx)
        mean = sum(confidence[i] for i in idx) / len(idx)
        gap += len(idx) * abs(acc - mean)
        buckets.append({"from": lo, "to": hi, "n": len(idx), "accuracy": round(acc, 4),
                        "mean_confidence": round(mean, 4)})
    return {"buckets": buckets, "ece": round(gap / len(correct), 4) if correct else 0.0}


def report(kinds: list[str], truth: list[str], labelled: list[str], model_top: list[str],
           confidence: list[float]) -> dict[str, Any]:
    """The evaluation of the final labels (`labelled`, after every layer and the threshold), overall and
    per kind, with the calibration of the model's own top category against its confidence."""
    out: dict[str, Any] = {}
    for kind in ("all", *sorted(set(kinds))):
        idx = [i for i, k in enumerate(kinds) if kind in ("all", k)]
        r = evaluate([truth[i] for i in idx], [labelled[i] for i in idx])
        r["calibration"] = calibration([model_top[i] == truth[i] for i in idx], [confidence[i] for i in idx])
        out[kind] = r
    return out
