"""Fitting a head: the logistic regression, its temperature and the conversation gate.

Every example is a list of parts (system prompt, user turns). One-part examples train the regression.
The temperature and the gate are fitted on out-of-fold probabilities (5 folds by source prompt, so no
variant of a prompt is on both sides), because probabilities on the examples a model was fitted on are
overconfident. The temperature minimises the log loss of the one-part examples; the gate minimises the
log loss of the folded conversation state on the examples with two parts or more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from router.classify.conversation import Batch, Slots, fold, gate_width, select_parts, sharpen
from router.classify.corpus import FOLDS, Example, fold_of
from router.classify.embedder import Encoder
from router.classify.features import LexicalFeatures
from router.classify.head import Head, features, softmax

log = logging.getLogger("cliffguard.classifier")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    parts: list[str]  # select_parts: the system prompt's slot ("" for none), then user turns
    label: str
    fold: int

    @property
    def texts(self) -> list[str]:
        return [p for p in self.parts if p]


def rows_of(examples: list[Example]) -> list[Row]:
    out = []
    for e in examples:
        system = " ".join(c for r, c in e.messages if r in ("system", "developer"))
        users = [c for r, c in e.messages if r == "user"]
        row = Row(select_parts(system, users), e.category, fold_of(e.group))
        if row.texts:
            out.append(row)
    return out


def _regression(x: object, y: list[str], c: float) -> object:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x, y)


def fit(examples: list[Example], embedder: Encoder, c: float = 16.0, progress: Progress | None = None) -> Head:
    say = progress or (lambda _: None)
    rows = rows_of(examples)
    singles = [r for r in rows if len(r.texts) == 1]
    labels = [r.label for r in singles]
    if len(set(labels)) < 2:
        raise ValueError("need single-prompt examples of at least two categories")
    texts = sorted({p for r in rows for p in r.texts})
    index = {t: i for i, t in enumerate(texts)}
    say(f"embedding {len(texts)} texts")
    chunks = [embedder.encode_with_ids(texts[i:i + 256]) for i in range(0, len(texts), 256)]
    emb = np.vstack([e for e, _ in chunks])
    ids = [seq for _, s in chunks for seq in s]
    lexical = LexicalFeatures.fit([ids[index[r.texts[0]]] for r in singles], embedder.vocab_size)
    x_all = features(emb, lexical, ids)
    x = x_all[[index[r.texts[0]] for r in singles]]
    classes = tuple(sorted(set(labels)))
    multi = [r for r in rows if len(r.texts) > 1 and r.label in classes]
    single_fold = np.array([r.fold for r in singles])
    oof = np.zeros((len(singles), len(classes)))
    part_logits: dict[tuple[int, int], np.ndarray] = {}
    if len(singles) >= 50:
        for k in range(FOLDS):
            train = single_fold != k
            if len(set(np.array(labels)[train])) < len(classes):
                continue
            say(f"fold {k + 1}/{FOLDS}")
            lr = _regression(x[train], [lb for lb, t in zip(labels, train, strict=True) if t], c)
            oof[~train] = lr.decision_function(x[~train])  # type: ignore[attr-defined]
            for i, r in enumerate(multi):
                if r.fold == k:
                    z = lr.decision_function(x_all[[index[p] for p in r.texts]])  # type: ignore[attr-defined]
                    slots = [j for j, p in enumerate(r.parts) if p]
                    part_logits.update({(i, j): z[n] for n, j in enumerate(slots)})
    say("fitting on everything")
    lr = _regression(x, labels, c)
    coef = np.asarray(lr.coef_, dtype=np.float32)  # type: ignore[attr-defined]
    y = np.array([classes.index(lb) for lb in labels])
    temperature = fit_temperature(oof, y) if oof.any() else 1.0
    # an empty part (no system prompt) gets zero logits: the fold masks it out
    convs = [(r, [part_logits.get((i, j), np.zeros(len(classes))) for j in range(len(r.parts))])
             for i, r in enumerate(multi) if (i, len(r.parts) - 1) in part_logits]
    head = Head(classes, coef[:, :emb.shape[1]].copy(), np.asarray(lr.intercept_, dtype=np.float32),  # type: ignore[attr-defined]
                embedder.name, lexical, coef[:, emb.shape[1]:].copy(), temperature)
    if len(convs) >= 50:
        probs = [list(softmax(np.array(z) / temperature)) for _, z in convs]
        batch = Batch.of([r.parts for r, _ in convs], probs, len(classes))
        y_conv = np.array([classes.index(r.label) for r, _ in convs])
        gate = fit_gate(batch, y_conv, Slots.of(classes))
        power = fit_sharpen(fold(batch, gate, Slots.of(classes)), y_conv)
        head = Head(head.classes, head.coef, head.intercept, head.embedder, lexical, head.lex_coef, temperature, gate,
                    power)
    log.info("fitted the classifier head: %d prompts, %d conversations, temperature %.2f, sharpen %.2f",
             len(singles), len(convs), temperature, head.sharpen)
    return head


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    def nll(t: float) -> float:
        p = softmax(logits / t)
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def fit_sharpen(states: np.ndarray, y: np.ndarray) -> float:
    """The power that makes the folded conversation probabilities calibrated (log loss, out of fold)."""
    rows = np.arange(len(y))

    def nll(a: float) -> float:
        return float(-np.log(sharpen(states, a)[rows, y] + 1e-12).mean())

    return float(minimize_scalar(nll, bounds=(0.2, 5.0), method="bounded").x)


def fit_gate(batch: Batch, y: np.ndarray, slots: Slots, max_rows: int = 2500) -> np.ndarray:
    """Gate weights, (2, gate_width), minimising the log loss of the folded state (the same
    `fold` the model runs), with a small L2 penalty on everything but the biases. A fixed random sample
    of at most `max_rows` conversations is enough for these few weights and bounds the first-start fit
    (the optimiser's numerical gradient folds the batch once per weight)."""
    if len(y) > max_rows:
        pick = np.sort(np.random.default_rng(0).choice(len(y), max_rows, replace=False))
        batch, y = Batch(batch.own[:, pick], batch.text[:, pick], batch.mask[:, pick]), y[pick]
    rows = np.arange(len(y))
    shape = (2, gate_width(batch.own.shape[2]))
    penalised = np.ones(shape)
    penalised[:, 0] = 0.0

    def nll(flat: np.ndarray) -> float:
        w = flat.reshape(shape)
        state = fold(batch, w, slots)
        return float(-np.log(state[rows, y] + 1e-9).mean() + 1e-3 * (penalised * w ** 2).sum())

    best = minimize(nll, np.zeros(shape[0] * shape[1]), method="L-BFGS-B")
    return np.asarray(best.x, dtype=np.float64).reshape(shape)
