"""Classifier evaluation: accuracy, per-category precision/recall and the confusion matrix. Pure."""

from __future__ import annotations

from collections import Counter
from typing import Any


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
