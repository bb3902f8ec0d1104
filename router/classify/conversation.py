"""A conversation's category from its parts. Pure.

The parts are the system prompt's slot (empty when there is none) and then the user turns in order;
each non-empty part gets its own probabilities from the model. Besides the categories, the model has one
more class, FOLLOW_UP, learned from turns that only make sense after another ("now make it more
formal", "what if the speed doubles?"); it is never a label. The parts are folded left to right into the
conversation's state: `state = g * part + (1 - g) * state`, where the gate `g` (a logistic function of
a few features of the part and the state) says how much the new turn decides by itself. A follow-up
gets a small `g` and inherits the conversation's capability; a long, confident, self-contained new task
gets a large one and switches. The system prompt and the first user turn have nothing before them to
refer to, so their FOLLOW_UP mass is dropped (what they ask is read over the categories alone: "what's
different about 5G?" is a question); in a later turn it counts as `other` in the mix. A closing turn
(thanks, a reaction, goodbye, a question about the assistant, keyboard mash: `closing`) exercises no
capability: its part is `other`, and it never inherits.

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
# A turn that exercises no capability (thanks, a reaction, goodbye, a question about the assistant, a test,
# keyboard mash) must not inherit the task before it; the model alone confuses such short turns with
# referential follow-ups ("ok" vs "ok, shorter"), so the gate also sees whether the whole turn is made of
# such words. Matched on the whole turn, so "thanks, now in French" is not a closing.
_CLOSING_WORDS = (
    r"thanks?|thank (you|u)|thx|ty|tysm|cheers|much appreciated|appreciate it|perfect|great|awesome|amazing|"
    r"wonderful|excellent|nice( one)?|cool|ok(ay)?|k+|alright|got it|fair enough|wow|lol|lmao|rofl|ha(ha)*h?|"
    r"he(he)+|love it|good bot|bye|goodbye|see (you|ya)|good ?night|gn|later|talk later|never ?mind|nvm|"
    r"forget it|test(ing)?|ping|hello|hi|hey|yo|gracias|merci|danke|grazie|obrigad[oa]|arigato|parfait|"
    r"you'?re (the best|funny|great|a lifesaver|a genius)|"
    r"that'?s? (it|all|perfect|great|exactly what i (wanted|needed))|"
    r"(so|very|really) much|a lot|a million|mate|too|for now|for today|bien|beaucoup|dir|mille|muchas|vielen dank|"
    r"c'est|that helped|you nailed it|i'?m done|sorry|wrong chat|\d+/10|all i needed|"
    r"have a (nice|good|great) (day|one|evening|weekend)|(they|she|he|we|my \w+) (loved|liked) it|"
    r"(she|he)'?s going to (cry|love it)|gotta go|got to go|(that|this) was (fun|great|helpful|nice)|you got me|"
    r"that'?s enough|(i'?m|im) (done|good|off|out)( playing| here)?|figured it out( myself)?|stop|no more|"
    r"all good|that'?s all( i (wanted|needed))?|all set|we'?re done|done|(it )?works now|it works|it worked|"
    r"that (fixed|solved|did) it|got(ta| to) (run|go)|bonne (journée|soirée)|hasta (luego|pronto)|"
    r"schönen (tag|abend)( noch)?|(that'?s )?enough( practice)? for (now|today)|let'?s stop (here|there)|"
    r"for (the|your) help|i'?ll (do|figure|work) it out( myself)?|i'?ll (do it|come up with (one|it)) myself")
CLOSING = re.compile(rf"^(?:[\s\W_]*(?:{_CLOSING_WORDS})(?![\w']))+[\s\W_]*$", re.IGNORECASE)
META = re.compile(
    r"^\W*((hi|hello|hey|ok(ay)?|cool|and|so|btw)\W+)*(who (made|built|created|trained|are) (you|u)|"
    r"what('?s| is) your name|are you (a |an )?(bot|human|real|person|robot|ai|chatgpt|gpt|sentient|alive|still there)|"
    r"what (model|llm|ai) are you|which (model|ai|llm)|do you have feelings|"
    r"do you (dream|remember|store (my|our|what))|"
    r"can (you|u) remember|how are (you|u)|what can (you|u) do|"
    # questions about the assistant itself: its languages, its data and this chat
    r"(can|do) (you|u) (speak|understand) (other|many|different|more) languages|"
    r"(do|does|will|can) (you|u|anyone|this (chat|app|assistant)) (store|keep|log|record|collect) "
    r"(what i|my|our|this|these)\b|"
    r"(is|are) (this|my|our) (chat|conversation|messages?|data|history) "
    r"(private|confidential|saved|stored|logged|secure)|"
    r"(can|how (do|can)) i (save|export|download|delete|clear) (this|the|my|our) "
    r"(chat|conversation|history)|"
    r"how (do|can) i (give|send|leave) feedback|can (you|u) (browse|search|access) (the )?(internet|web))",
    re.IGNORECASE)
# keyboard mash: one letter repeated, or a run of keys from one row of the keyboard
MASH = re.compile(r"^\W*(?:(\w)\1{3,}|[qwertyuiop]{6,}|[asdfghjkl;]{6,}|[zxcvbnm]{5,})\W*$", re.IGNORECASE)
# gate features: bias, log words, refers back, own confidence, agreement with the state, state `other`,
# own `other`, own FOLLOW_UP, no capability (a closing turn); then one weight per class of the state, and
# one per class of the part itself (a short turn that looks like reasoning on its own, "why is that?",
# is weak evidence of a switch: the fit learns how much each category's own look is worth)
N_FEATURES = 9
# a hand-set prior (long confident parts switch, follow-ups and `other` inherit, closings switch), used
# only when a head is fitted without conversations to learn the gate from
DEFAULT_GATE = np.array([-4.0, 1.2, -1.0, 2.5, 0.0, 3.0, -3.0, -4.0, 8.0], dtype=np.float64)


def gate_width(classes: int) -> int:
    return N_FEATURES + 2 * classes


def gate_matrix(gate: np.ndarray, classes: int) -> np.ndarray:
    """The gate as (2, gate_width): row 0 for the first user turn after a system prompt, row 1 for later
    turns. Older gates get zero weights for what they lack (the closing feature, the part's own classes);
    a legacy gate of N_FEATURES weights applies to both rows, with no per-class terms."""
    if gate.shape == (2, gate_width(classes)):
        return gate
    if gate.shape == (2, N_FEATURES - 1 + classes):  # fitted before the closing feature: it weighs nothing
        gate = np.insert(gate, N_FEATURES - 1, 0.0, axis=1)
    if gate.shape == (2, N_FEATURES + classes):  # fitted before the part's own per-class weights
        return np.concatenate([gate, np.zeros((2, classes))], axis=1)
    row = np.concatenate([gate if gate.shape == (N_FEATURES,) else DEFAULT_GATE, np.zeros(2 * classes)])
    return np.stack([row, row])


def select_parts(system: str, users: list[str]) -> list[str]:
    """The texts the model reads, in order: the system prompt's slot ("" when there is none, so the fold
    knows which part it is), the first user turn and the last MAX_LAST_TURNS user turns."""
    turns = users if len(users) <= MAX_LAST_TURNS + 1 else [users[0], *users[-MAX_LAST_TURNS:]]
    return [system if system.strip() else "", *turns]


def closing(text: str) -> bool:
    """Whether a turn exercises no capability: thanks, reactions, goodbyes, meta questions, keyboard mash."""
    t = text.strip()
    if not t or len(t) > 80:
        return False
    emoji_only = not any(ch.isalnum() or ch == "?" for ch in t)
    return bool(emoji_only or CLOSING.match(t) or MASH.match(t) or (META.match(t) and len(t.split()) <= 8))


def text_features(text: str) -> tuple[float, float, float]:
    """The gate's features of a part's text: log word count, whether it refers back, whether it is a
    closing turn (no capability)."""
    words = len(text.split())
    return (math.log1p(words), 1.0 if words < 25 and REFERENTIAL.search(text[:200]) else 0.0,
            1.0 if closing(text) else 0.0)


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


    def content(self, p: np.ndarray) -> np.ndarray:
        """Probabilities over the categories given that the part is not a follow-up."""
        if self.follow is None:
            return p
        r = p.copy()
        r[..., self.follow] = 0.0
        return r / np.maximum(r.sum(axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Batch:
    """Conversations as padded arrays: step j of conversation i is own[j, i] (the part's probabilities);
    step 0 is the system prompt's slot. Empty parts are masked out."""

    own: np.ndarray  # (steps, n, classes)
    text: np.ndarray  # (steps, n, 3): text_features
    mask: np.ndarray  # (steps, n): the conversation has a non-empty part at this step

    @classmethod
    def of(cls, parts: Sequence[Sequence[str]], probs: Sequence[Sequence[np.ndarray]], classes: int) -> Batch:
        n, steps = len(parts), max((len(p) for p in parts), default=1)
        own, text = np.zeros((steps, n, classes)), np.zeros((steps, n, 3))
        mask = np.zeros((steps, n), dtype=bool)
        for i, (ps, pr) in enumerate(zip(parts, probs, strict=True)):
            for j, (t, p) in enumerate(zip(ps, pr, strict=True)):
                if t:
                    own[j, i], text[j, i], mask[j, i] = p, text_features(t), True
        return cls(own, text, mask)


def fold(batch: Batch, gate: np.ndarray, slots: Slots) -> np.ndarray:
    """Each conversation's probabilities over the categories, (n, classes); the FOLLOW_UP column is 0.
    The first non-empty part starts the state; every later one is mixed in by the gate.

    What does not depend on the state is computed for every step at once; the loop does only the state's
    terms, and only at steps where some part is mixed into a state (a request of one part costs a few
    numpy calls, not dozens)."""
    steps, n, classes = batch.own.shape
    weights = gate_matrix(gate, classes)
    raw, text, mask = batch.own, batch.text, batch.mask
    # the system prompt and the first user turn have nothing before them to refer to: what they ask is
    # read over the categories alone ("what's different about 5G?" is a question, not a follow-up)
    own = np.concatenate([slots.content(raw[:2]), slots.categories(raw[2:])])
    if slots.other is not None:  # a closing turn exercises no capability: it is `other`, whatever it says
        no_task = np.zeros(classes)
        no_task[slots.other] = 1.0
        own = np.where(text[..., 2:3] > 0, no_task, own)
    state = np.zeros((n, classes))
    started = np.zeros(n, dtype=bool)
    if (mask & (mask.cumsum(axis=0) > 1)).any():  # some part is mixed into a state: the gate's part-only
        w = weights[np.where(np.arange(steps) == 1, 0, 1)]  # terms, for every step (row 0 after the system slot)
        fixed = (w[:, :1] + np.einsum("snk,sk->sn", text[..., :2], w[:, 1:3]) + w[:, 3:4] * own.max(axis=2)
                 + w[:, 8:9] * text[..., 2] + np.einsum("snc,sc->sn", own, w[:, N_FEATURES + classes:]))
        if slots.other is not None:
            fixed += w[:, 6:7] * own[..., slots.other]
        if slots.follow is not None:
            fixed += w[:, 7:8] * raw[..., slots.follow]
    for j in range(steps):
        if (mask[j] & started).any():
            wj = w[j]
            z = fixed[j] + wj[4] * (own[j] * state).sum(axis=1) + state @ wj[N_FEATURES:N_FEATURES + classes]
            if slots.other is not None:
                z += wj[5] * state[:, slots.other]
            g = np.where(started, 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), 1.0)[:, None]
            state = np.where(mask[j][:, None], g * own[j] + (1 - g) * state, state)
        elif mask[j].any():  # only first parts here: they start the state
            state[mask[j]] = own[j][mask[j]]
        started |= mask[j]
    if not started.all():  # nothing to read: no category is likelier than another
        state[~started] = slots.categories(np.full((int((~started).sum()), classes), 1.0 / classes))
    return state


def sharpen(state: np.ndarray, power: float) -> np.ndarray:
    """Calibrate folded probabilities: mixing parts blurs them, so a power above 1 (fitted in training)
    restores confidence that matches accuracy. Zeros stay zero."""
    p = np.power(state, power)
    return p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-12)  # type: ignore[no-any-return]
