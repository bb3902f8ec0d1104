"""Reading judge answers and combining both orders into one outcome. Pure.

Pairwise verdicts follow MT-Bench: the judge ends with [[A]], [[B]] or [[C]] (tie). Both orders are
judged; agreement gives a win or a loss, disagreement or an explicit tie gives a tie. An answer with no
clean verdict is a parse failure, never a win, loss or tie.
"""

from __future__ import annotations

import re
from enum import StrEnum

_PAIRWISE = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_RATING = re.compile(r"\[\[\s*(10|[1-9](?:\.\d+)?)\s*\]\]")


class Verdict(StrEnum):
    A = "A"
    B = "B"
    TIE = "tie"


class ParseFailure(ValueError):
    pass


def parse_pairwise(text: str) -> Verdict:
    found = set(_PAIRWISE.findall(text))
    if len(found) != 1:  # none, or contradictory verdicts: not a verdict
        raise ParseFailure(f"no single [[A]]/[[B]]/[[C]] verdict in: {text[-200:]!r}")
    v = found.pop()
    return Verdict.TIE if v == "C" else Verdict(v)


def parse_rating(text: str) -> float:
    found = _RATING.findall(text)
    if not found:
        raise ParseFailure(f"no [[rating]] in: {text[-200:]!r}")
    return float(found[-1])


def combine(candidate_first: Verdict, stable_first: Verdict) -> tuple[int, bool]:
    """Outcome for the candidate (+1/0/-1) from the two orders, and whether they were consistent.

    `candidate_first`: the verdict with the candidate as A; `stable_first`: with the stable answer as A.
    """
    cand_wins_1 = candidate_first == Verdict.A
    cand_wins_2 = stable_first == Verdict.B
    stable_wins_1 = candidate_first == Verdict.B
    stable_wins_2 = stable_first == Verdict.A
    consistent = (cand_wins_1 == cand_wins_2) and (stable_wins_1 == stable_wins_2)
    if cand_wins_1 and cand_wins_2:
        return 1, True
    if stable_wins_1 and stable_wins_2:
        return -1, True
    return 0, consistent
