"""A conversation's category from its parts. Pure.

Each part (the system prompt, then the user turns in order) gets its own probabilities from the model.
They are folded left to right into the conversation's state: `state = g * part + (1 - g) * state`,
where the gate `g` (a logistic function of a few features of the part and the state) says how much the
new turn decides by itself. A short or referential follow-up ("now make it more formal", "what if the
speed doubles?") gets a small `g` and inherits the conversation's capability; a long, confident,
self-contained new task gets a large one and switches. The gate's weights are fitted on the composed
conversations of the training corpus (`training.py`).

Assistant turns are not read: they differ between the versions that answered them, and the label must
not depend on which arm served the conversation so far.
"""

from __future__ import annotations

import math
import re

import numpy as np

# the parts read: the system prompt, the first user turn (it usually sets the task) and the last ones
MAX_LAST_TURNS = 3
REFERENTIAL = re.compile(
    r"^\s*(and|but|also|now|then|so|ok(ay)?|what if|what about|how about|instead|again|same|more|less|"
    r"shorter|longer|why|can you|could you|make it|do it|try)\b|\b(it|that|this|these|those|them|above|"
    r"previous|earlier|last one|your answer|you said|same)\b", re.IGNORECASE)
N_FEATURES = 7
# fallback gate weights (bias, log words, referential, own confidence, agreement, state other, own other),
# used when a head is fitted without any conversations to learn them from
DEFAULT_GATE = np.array([-4.0, 1.2, -1.0, 2.5, 0.0, 3.0, -3.0], dtype=np.float64)


def select_parts(system: str, users: list[str]) -> list[str]:
    """The texts the model reads, in order: the system prompt (if any), the first user turn and the
    last MAX_LAST_TURNS user turns."""
    turns = users if len(users) <= MAX_LAST_TURNS + 1 else [users[0], *users[-MAX_LAST_TURNS:]]
    return ([system] if system.strip() else []) + turns


def part_features(text: str, own: np.ndarray) -> tuple[float, float, float]:
    """The gate's features of a part alone: log word count, refers back, own confidence."""
    words = len(text.split())
    return math.log1p(words), 1.0 if words < 25 and REFERENTIAL.search(text[:200]) else 0.0, float(own.max())


def gate_features(text: str, own: np.ndarray, state: np.ndarray, other: int | None) -> np.ndarray:
    return np.array([
        1.0,
        *part_features(text, own),
        float(own @ state),
        float(state[other]) if other is not None else 0.0,
        float(own[other]) if other is not None else 0.0,
    ])


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def fold(parts: list[str], probs: list[np.ndarray], gate: np.ndarray, other: int | None) -> np.ndarray:
    """The conversation's probabilities from each part's own (same order as `parts`)."""
    state = probs[0]
    for text, own in zip(parts[1:], probs[1:], strict=True):
        g = sigmoid(float(gate @ gate_features(text, own, state, other)))
        state = g * own + (1 - g) * state
    return state
