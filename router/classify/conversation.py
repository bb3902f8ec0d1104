"""A conversation's category from its parts. Pure.

The parts are the system prompt's slot (empty when there is none) and then the user turns in order;
each non-empty part gets its own probabilities from the model. Besides the categories, the model has one
more class, FOLLOW_UP, learned from turns that only make sense after another ("now make it more
formal", "what if the speed doubles?"); it is never a label. The parts are folded left to right into the
conversation's state: `state = g * part + (1 - g) * state`, where the gate `g` (a logistic function of
a few features of the part and the state) says how much the new turn decides by itself. A follow-up
gets a small `g` and inherits the conversation's capability; a long, confident, self-contained new task
gets a large one and switches. A part's FOLLOW_UP mass counts as `other` in the state: a follow-up with
nothing before it is no task.

The gate has two rows of weights: one for the first user turn after a system prompt (does the system
prompt set the task, or is it generic and the turn decides?), one for later turns. Besides the part's
own features, each row weighs the state's categories: some capabilities (roleplay, extraction) run on
for many turns that look like something else on their own. The weights are fitted on the composed
conversations of the training corpus (`training.py`).

Assistant turns are not read: they differ between the versions that answered them, and the label must
not depend on which arm served the conversation so far.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FOLLOW_UP = "_follow_up"  # the model's extra class (never a configured category: names start with a letter)
# the parts read: the system prompt, the first user turn (it usually sets the task) and the last ones
MAX_LAST_TURNS = 3
REFERENTIAL = re.compile(
    r"^\s*(and|but|also|now|then|so|ok(ay)?|what if|what about|how about|instead|again|same|more|less|"
    r"shorter|longer|why|can you|could you|make it|do it|try)\b|\b(it|that|this|these|those|them|above|"
    r"previous|earlier|last one|your answer|you said|same)\b", re.IGNORECASE)
# gate features: bias, log words, refers back, own confidence, agreement with the state, state `other`,
# own `other`, own FOLLOW_UP; then one weight per class of the state
N_FEATURES = 8
# a hand-set prior (long confident parts switch, follow-ups and `other` inherit), used only when a head is
# fitted without conversations to learn the gate from
DEFAULT_GATE = np.array([-4.0, 1.2, -1.0, 2.5, 0.0, 3.0, -3.0, -4.0], dtype=np.float64)


def gate_matrix(gate: np.ndarray, classes: int) -> np.ndarray:
    """The gate as (2, N_FEATURES + classes): row 0 for the first user turn after a system prompt, row 1
    for later turns. A legacy gate of N_FEATURES weights applies to both, with no per-class terms."""
    if gate.shape == (2, N_FEATURES + classes):
        return gate
    row = np.concatenate([gate if gate.shape == (N_FEATURES,) else DEFAULT_GATE, np.zeros(classes)])
    return np.stack([row, row])


def select_parts(system: str, users: list[str]) -> list[str]:
    """The texts the model reads, in order: the system prompt's slot ("" when there is none, so the fold
    knows which part it is), the first user turn and the last MAX_LAST_TURNS user turns."""
    turns = users if len(users) <= MAX_LAST_TURNS + 1 else [users[0], *users[-MAX_LAST_TURNS:]]
    return [system if system.strip() else "", *turns]


def text_features(text: str) -> tuple[float, float]:
    """The gate's features of a part's text: log word count, and whether it refers back."""
    words = len(text.split())
    return math.log1p(words), 1.0 if words < 25 and REFERENTIAL.search(text[:200]) else 0.0


@dataclass(frozen=True)
class Slots:
    """Where `other` and FOLLOW_UP sit in the model's classes (either may be absent)."""

    other: int | None
    follow: int | None

    @classmethod
    def of(cls, classes: Sequence[str]) -> Slots:
        return cls(classes.index("other") if "other" in classes else None,
                   classes.index(FOLLOW_UP) if FOLLOW_UP in classes else None)

    def categories(self, p: np.ndarray) -> np.ndarray:
        """Probabilities over the categories only: FOLLOW_UP's mass goes to `other`."""
        if self.follow is None:
            return p
        r = p.copy()
        if self.other is not None:
            r[..., self.other] += r[..., self.follow]
        r[..., self.follow] = 0.0
        return r / np.maximum(r.sum(axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Batch:
    """Conversations as padded arrays: step j of conversation i is own[j, i] (the part's probabilities);
    step 0 is the system prompt's slot. Empty parts are masked out."""

    own: np.ndarray  # (steps, n, classes)
    text: np.ndarray  # (steps, n, 2): text_features
    mask: np.ndarray  # (steps, n): the conversation has a non-empty part at this step

    @classmethod
    def of(cls, parts: Sequence[Sequence[str]], probs: Sequence[Sequence[np.ndarray]], classes: int) -> Batch:
        n, steps = len(parts), max((len(p) for p in parts), default=1)
        own, text = np.zeros((steps, n, classes)), np.zeros((steps, n, 2))
        mask = np.zeros((steps, n), dtype=bool)
        for i, (ps, pr) in enumerate(zip(parts, probs, strict=True)):
            for j, (t, p) in enumerate(zip(ps, pr, strict=True)):
                if t:
                    own[j, i], text[j, i], mask[j, i] = p, text_features(t), True
        return cls(own, text, mask)


def fold(batch: Batch, gate: np.ndarray, slots: Slots) -> np.ndarray:
    """Each conversation's probabilities over the categories, (n, classes); the FOLLOW_UP column is 0.
    The first non-empty part starts the state; every later one is mixed in by the gate."""
    steps, n, classes = batch.own.shape
    weights = gate_matrix(gate, classes)
    state = np.zeros((n, classes))
    started = np.zeros(n, dtype=bool)
    zero = np.zeros(n)
    for j in range(steps):
        raw = batch.own[j]
        own = slots.categories(raw)
        w = weights[0 if j == 1 else 1]
        z = (w[0] + batch.text[j] @ w[1:3] + w[3] * own.max(axis=1) + w[4] * (own * state).sum(axis=1)
             + w[5] * (state[:, slots.other] if slots.other is not None else zero)
             + w[6] * (own[:, slots.other] if slots.other is not None else zero)
             + w[7] * (raw[:, slots.follow] if slots.follow is not None else zero)
             + state @ w[N_FEATURES:])
        g = np.where(started, 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), 1.0)[:, None]
        state = np.where(batch.mask[j][:, None], g * own + (1 - g) * state, state)
        started |= batch.mask[j]
    if not started.all():  # nothing to read: no category is likelier than another
        state[~started] = slots.categories(np.full((int((~started).sum()), classes), 1.0 / classes))
    return state


def sharpen(state: np.ndarray, power: float) -> np.ndarray:
    """Calibrate folded probabilities: mixing parts blurs them, so a power above 1 (fitted in training)
    restores confidence that matches accuracy. Zeros stay zero."""
    p = np.power(state, power)
    return p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]
