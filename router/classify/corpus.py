"""The shipped training corpus for the default categories, built deterministically from the files in
`data/`. Pure (no model): it only reads package files and composes rows.

- `prompts/<category>.txt`: hand-written single prompts, one per line (a literal `\\n` is a line break).
- `documents.txt` + `compose.yaml`: pasted material combined with extraction, summarization and writing
  instructions, before or after the material.
- `followups.yaml` + `systems.yaml`: composed conversations. A referential follow-up carries the
  category of the turn that set the task; a self-contained new task switches; a system prompt that sets
  the task decides a vague or content-only first turn; a generic one (written, or composed from an
  assistant name, a company and house rules) leaves the label to the user turn. Roleplay and
  extraction also get runs of several follow-ups (in-character lines, "same for this one").
- `closings.txt` (+ generated keyboard mash): turns that exercise no capability (thanks, reactions,
  goodbyes, meta questions), alone and after a task, labelled `other`: they never inherit the task.

Variants (typos, no capitals or punctuation, chatty wrappers, a generic system prompt) teach the style
noise real traffic has. Each row carries a `group` (its source prompt), so cross-validation never puts a
variant of a prompt on both sides of a split.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from router.classify.conversation import FOLLOW_UP

ASSISTANT_REPLY = "Sure. Here is my answer."  # assistant turns are not read by the classifier
SEED = 20261122
FOLDS = 5
STICKY = ("roleplay", "extraction")  # categories whose conversations run on for several follow-ups


def fold_of(group: str) -> int:
    """The cross-validation fold of a source prompt (stable across runs and processes)."""
    return zlib.crc32(group.encode()) % FOLDS


@dataclass(frozen=True)
class Example:
    messages: tuple[tuple[str, str], ...]  # (role, content); a single prompt is one user turn
    category: str
    group: str
    kind: str  # single (one user turn) | conversation


def _files() -> Any:
    return resources.files("router.classify").joinpath("data")


def _lines(text: str) -> list[str]:
    return [ln.replace("\\n", "\n") for ln in (x.strip() for x in text.splitlines()) if ln and not ln.startswith("#")]


@cache
def prompts() -> dict[str, tuple[str, ...]]:
    out = {}
    for f in sorted(_files().joinpath("prompts").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".txt"):
            out[f.name[:-4]] = tuple(_lines(f.read_text(encoding="utf-8")))
    return out


@cache
def _yaml(name: str) -> Any:
    return yaml.safe_load(_files().joinpath(name).read_text(encoding="utf-8"))


def _documents() -> list[str]:
    return _lines(_files().joinpath("documents.txt").read_text(encoding="utf-8"))


def _mash(rng: random.Random) -> str:
    """Keyboard mash: a turn that is no task in any language."""
    if rng.random() < 0.3:
        return rng.choice(_KEYS) * rng.randrange(4, 12)
    row = rng.choice(("qwertyuiop", "asdfghjkl", "zxcvbnm", _KEYS))
    return "".join(rng.choice(row) for _ in range(rng.randrange(4, 14)))


def _closings(rng: random.Random) -> list[str]:
    """Closing turns (thanks, reactions, goodbyes, meta questions, mash): `other` even after a task."""
    return _lines(_files().joinpath("closings.txt").read_text(encoding="utf-8")) + [_mash(rng) for _ in range(25)]


# -- style variants ---------------------------------------------------------------------------------

_WRAPPERS = (
    "hey, quick question: {p}", "{p} thanks!", "can you help me with this? {p}", "pls {p}", "{p}\n\nthx in advance",
    "Hi! {p}", "I need some help. {p}", "{p} Please be brief.", "ok so {p}", "Hello there,\n\n{p}\n\nBest, Sam",
    "{p} (asking for a friend)", "So, {p}", "My question: {p}", "{p} Could you answer quickly?",
)
_KEYS = "qwertyuiopasdfghjklzxcvbnm"


def _typos(text: str, rng: random.Random, rate: float = 0.12) -> str:
    def spoil(m: re.Match[str]) -> str:
        w = m.group(0)
        if len(w) < 4 or rng.random() > rate:
            return w
        i = rng.randrange(1, len(w) - 1)
        op = rng.randrange(4)
        if op == 0:
            return w[:i] + w[i + 1:]  # drop
        if op == 1:
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]  # swap
        if op == 2:
            return w[:i] + w[i] + w[i:]  # double
        return w[:i] + rng.choice(_KEYS) + w[i + 1:]  # wrong key

    return re.sub(r"[A-Za-z]+", spoil, text)


def _plain(text: str) -> str:
    return re.sub(r"[?.!,;:]+(\s|$)", r"\1", text.lower()).strip()


def _variants(prompt: str, rng: random.Random) -> list[str]:
    out = []
    if rng.random() < 0.6:
        out.append(_typos(prompt, rng))
    if rng.random() < 0.6:  # much real traffic is typed in lower case, without punctuation, often misspelled
        out.append(_plain(prompt) if rng.random() < 0.5 else _typos(_plain(prompt), rng))
    if rng.random() < 0.5:
        out.append(rng.choice(_WRAPPERS).format(p=prompt))
    return out


def _styled(text: str, rng: random.Random) -> str:
    """A turn of a composed conversation in one of the styles real users type in."""
    r = rng.random()
    return _plain(text) if r < 0.3 else _typos(text, rng) if r < 0.45 else text


# generic system prompts composed from parts: who the assistant is, for whom, and house rules that say
# nothing about the task (the written ones in systems.yaml come first)
_PERSONAS = ("You are {n}, the virtual assistant of {c}.", "You are a helpful assistant for {c}.",
             "You are {c}'s AI assistant.", "You are {n}, an AI assistant built by {c}.",
             "You are the customer support assistant of {c}, a {i} company.",
             "You are an assistant for employees of {c}.",
             "This is {c}'s chat assistant, {n}.", "You are a friendly assistant working for {c} ({i}).",
             "You are the staff helpdesk assistant for {c}.", "You are the internal assistant at {c}, a {i} firm.",
             "You are {c}'s support assistant.")
_NAMES = ("Ava", "Leo", "Zia", "Max", "Nova", "Sam", "Iris", "Kai", "Mila", "Otto", "Remy", "Juno")
_COMPANIES = ("Brightside Bank", "Globex", "Acme Corp", "Northwind", "Helios Energy", "Pinecrest Clinic", "Orbit Games",
              "Tidewater Legal", "FreshCart", "Sterling Insurance", "Kappa Logistics", "Bluebird Airlines",
              "Maple Realty", "Vega Telecom", "Cobalt Software", "the City of Riverton", "Halcyon Health",
              "Redwood University", "Summit Freight", "Aurora Hotels")
_INDUSTRIES = ("banking", "retail", "healthcare", "gaming", "insurance", "logistics", "legal services", "telecom",
               "travel", "software", "energy", "real estate",
               "education", "hospitality")
_RULES = ("Be polite and concise.", "Never share personal data.", "Keep answers under 150 words.",
          "Answer in the user's language.", "Do not give financial advice.", "Use markdown where helpful.",
          "If you are unsure, say so.", "Today's date is 2025-05-02.", "Do not mention competitors.",
          "Escalate complaints to a human agent.", "Be friendly and professional.", "Refuse harmful requests.",
          "Knowledge cutoff: 2024-09.", "Always greet the user by name if known.",
          "Keep answers clear and professional.", "Never share internal pricing.", "Be concise, friendly and accurate.")


def _generic_systems(rng: random.Random, written: list[str], n: int = 80) -> list[str]:
    out = list(written)
    for _ in range(n):
        who = rng.choice(_PERSONAS).format(n=rng.choice(_NAMES), c=rng.choice(_COMPANIES), i=rng.choice(_INDUSTRIES))
        out.append(" ".join([who, *rng.sample(_RULES, rng.randrange(0, 3))]))
    return out


# -- rows -------------------------------------------------------------------------------------------

def _single(text: str, category: str, group: str, system: str | None = None) -> Example:
    msgs = ((("system", system),) if system else ()) + (("user", text),)
    return Example(msgs, category, group, "single")


def _single_part(role: str, text: str, category: str, group: str) -> Example:
    return Example(((role, text),), category, group, "single")


def _conversation(turns: Iterable[str], category: str, group: str, system: str | None = None) -> Example:
    msgs: list[tuple[str, str]] = [("system", system)] if system else []
    turns = list(turns)
    for i, t in enumerate(turns):
        msgs.append(("user", t))
        if i < len(turns) - 1:
            msgs.append(("assistant", ASSISTANT_REPLY))
    return Example(tuple(msgs), category, group, "conversation")


def _composed(rng: random.Random, categories: set[str]) -> list[Example]:
    docs = _documents()
    out = []
    for category, instructions in _yaml("compose.yaml").items():
        if category not in categories:
            continue
        for i, instruction in enumerate(instructions):
            for d in rng.sample(range(len(docs)), 6):
                text = f"{instruction}\n\n{docs[d]}" if rng.random() < 0.6 else f"{docs[d]}\n\n{instruction}"
                out.append(_single(text, category, f"compose:{category}:{i}"))
    return out


def _conversations(rng: random.Random, pool: dict[str, tuple[str, ...]], categories: set[str],
                   closings: list[str]) -> list[Example]:
    follow: dict[str, list[str]] = _yaml("followups.yaml")
    systems: dict[str, Any] = _yaml("systems.yaml")
    generic_systems = _generic_systems(rng, systems["generic"])
    out: list[Example] = []
    cats = sorted(c for c in pool if c != "other")

    def same_fold(c: str, f: int) -> list[str]:  # conversations never mix CV folds
        return [p for j, p in enumerate(pool[c]) if fold_of(f"prompt:{c}:{j}") == f] or list(pool[c])

    def follow_up(c: str, f: int) -> str:  # one of the category's own follow-ups, or a generic one
        key = c if c in follow and rng.random() < 0.7 else "generic"
        return rng.choice([t for i, t in enumerate(follow[key]) if fold_of(f"follow:{key}:{i}") == f] or follow[key])

    def closing(f: int) -> str:
        return rng.choice([t for i, t in enumerate(closings) if fold_of(f"closing:{i}") == f] or closings)

    for c in cats:
        for j, first in enumerate(pool[c]):
            group = f"prompt:{c}:{j}"
            system = rng.choice(generic_systems) if rng.random() < 0.3 else None
            # a follow-up that refers back inherits the category of the task
            turns = [first, follow_up(c, fold_of(group))]
            if rng.random() < 0.3:
                turns.append(follow_up(c, fold_of(group)))
            out.append(_conversation([_styled(t, rng) for t in turns], c, group, system))
            if c in STICKY:  # in-character lines and "same for this one" keep the task for several turns
                more = [follow_up(c, fold_of(group)) for _ in range(rng.randrange(1, 4))]
                out.append(_conversation([_styled(t, rng) for t in [first, *more]], c, group))
            if rng.random() < 0.25:  # a generic system prompt and one turn: the turn decides
                out.append(_single(_styled(first, rng), c, group, rng.choice(generic_systems)))
            if closings and rng.random() < 0.4:  # thanks, chit-chat or a meta question after the task is no task
                middle = [follow_up(c, fold_of(group))] if rng.random() < 0.3 else []
                turns = [first, *middle, closing(fold_of(group))]
                out.append(_conversation([_styled(t, rng) for t in turns], "other", group, system))
            # a self-contained new task switches
            other = rng.choice([d for d in cats if d != c])
            switch = rng.choice(same_fold(other, fold_of(group)))
            prefix = rng.choice(("", "", "Thanks. ", "Different question: ", "ok, new topic. ", "Next: "))
            out.append(_conversation([first, prefix + switch], other, group, system))
        # a greeting first, then the task
        for j in rng.sample(range(len(pool[c])), min(15, len(pool[c]))):
            group = f"prompt:{c}:{j}"
            out.append(_conversation([rng.choice(same_fold("other", fold_of(group))), pool[c][j]], c, group))
    for i, system in enumerate(generic_systems):  # a system prompt alone: generic ones say nothing
        out.append(_single_part("system", system, "other", f"system:generic:{i}"))
    for c, texts in systems["task"].items():
        out.extend(_single_part("system", s, c, f"system:{c}:{i}") for i, s in enumerate(texts))
    docs = _documents()
    starters = ("hi", "let's start", "ok", "Here you go:", "go", "hello, are you ready?", "start", "hello?", "hey",
                "ready", "next one", "here:", "help", "it's still not working", "can you help me with something")
    for i, system in enumerate(generic_systems):  # and a vague first turn under a generic one is no task
        out.append(_single(rng.choice(starters), "other", f"system:generic:{i}", system))
        if closings:
            out.append(_single(closing(fold_of(f"system:generic:{i}")), "other", f"system:generic:{i}", system))
    for c, texts in systems["task"].items():
        if c not in pool:
            continue
        for i, system in enumerate(texts):
            for k in range(8):
                if k < 2:  # a vague first turn: the system prompt sets the task
                    user = rng.choice(starters)
                elif c in ("extraction", "summarization", "writing"):
                    user = rng.choice(docs)
                elif c == "roleplay":  # an in-character opening line
                    user = rng.choice(follow[c])
                else:
                    user = rng.choice(pool[c])
                group = f"system:{c}:{i}"
                out.append(_single(user, c, group, system))
                if c in ("roleplay", "writing", "summarization", "extraction"):
                    out.append(_conversation([user, follow_up(c, fold_of(group))], c, group, system))
    return [e for e in out if e.category in categories]


def _follow_ups(rng: random.Random) -> list[Example]:
    """Every follow-up alone, as the model's FOLLOW_UP class (a turn that only makes sense after another)."""
    out: list[Example] = []
    for key, texts in _yaml("followups.yaml").items():
        for i, t in enumerate(texts):
            group = f"follow:{key}:{i}"
            out.extend(_single(v, FOLLOW_UP, group) for v in [t, *_variants(t, rng)])
    return out


@cache
def corpus(categories: frozenset[str]) -> tuple[Example, ...]:
    """Every training row for these categories (the default ones that are not replaced or dropped)."""
    rng = random.Random(SEED)
    pool = {c: texts for c, texts in prompts().items() if c in categories}
    rows: list[Example] = []
    for c, texts in pool.items():
        for j, p in enumerate(texts):
            group = f"prompt:{c}:{j}"
            rows.append(_single(p, c, group))
            rows.extend(_single(v, c, group) for v in _variants(p, rng))
            if rng.random() < 0.15:
                rows.append(_single(p, c, group, rng.choice(_yaml("systems.yaml")["generic"])))
    rows += _composed(rng, set(categories))
    closings = _closings(rng) if "other" in pool else []
    for i, t in enumerate(closings):
        rows.append(_single(t, "other", f"closing:{i}"))
    rows += _conversations(rng, pool, set(categories), closings)
    if pool:  # follow-ups fit any taxonomy, but need the corpus's conversations to teach the gate
        rows += _follow_ups(rng)
    return tuple(rows)
