import math

import orjson
import pytest

from judges.prompts import pairwise_messages, question_text
from judges.records import answer_from_body, answer_from_sse, generation_params
from judges.sampling import Sampler, SamplingConfig, make_redactor, unit_hash
from judges.verdicts import ParseFailure, Verdict, combine, parse_pairwise, parse_rating


@pytest.mark.parametrize("text,verdict", [
    ("A explains better. [[A]]", Verdict.A), ("[[B]]", Verdict.B), ("equal [[C]]", Verdict.TIE),
    ("verdict: [[ B ]]", Verdict.B), ("[[A]] ... final: [[A]]", Verdict.A),
])
def test_parse_pairwise(text, verdict):
    assert parse_pairwise(text) == verdict


@pytest.mark.parametrize("text", ["no verdict here", "[A]", "[[A]] or maybe [[B]]", "[[D]]", ""])
def test_unparseable_verdicts_are_failures_not_ties(text):
    with pytest.raises(ParseFailure):
        parse_pairwise(text)


def test_parse_rating():
    assert parse_rating("good. Rating: [[8]]") == 8.0
    assert parse_rating("[[7.5]]") == 7.5
    with pytest.raises(ParseFailure):
        parse_rating("Rating: 11/10")


def test_combine_both_orders():
    A, B, T = Verdict.A, Verdict.B, Verdict.TIE
    assert combine(A, B) == (1, True)  # candidate first and chosen, stable first and candidate chosen
    assert combine(B, A) == (-1, True)
    assert combine(A, A) == (0, False)  # position bias: always the first one
    assert combine(B, B) == (0, False)
    assert combine(T, T) == (0, True)
    assert combine(A, T) == (0, False)


def test_sampling_is_deterministic_and_holds_its_rate_over_10k_requests():
    s = Sampler(SamplingConfig(default_rate=0.1, rates={"math": 0.5}, min_per_window=0))
    ids = [f"req-{i}" for i in range(10_000)]
    picked = [i for i in ids if s.decide(i, "coding")]
    sd = math.sqrt(10_000 * 0.1 * 0.9)
    assert abs(len(picked) - 1_000) < 4 * sd
    again = Sampler(SamplingConfig(default_rate=0.1, min_per_window=0))
    assert [i for i in ids if again.decide(i, "coding")] == picked  # same ids, same decisions
    math_picked = sum(s.decide(i, "math") for i in ids)
    assert abs(math_picked - 5_000) < 4 * math.sqrt(10_000 * 0.25)
    assert 0 <= unit_hash("x") < 1


def test_min_per_window_and_opt_out():
    now = [0.0]
    s = Sampler(SamplingConfig(default_rate=0.0, min_per_window=3, window_s=60), clock=lambda: now[0])
    taken = [s.decide(f"r{i}", "rare") for i in range(10)]
    assert taken == [True] * 3 + [False] * 7
    now[0] = 61.0  # a new window
    assert s.decide("r-next", "rare")
    assert not s.decide("r-opt", "rare", opted_out=True)


def test_redaction_patterns_and_hook():
    cfg = SamplingConfig(redact_hook="tests.unit.test_judging_pure:_upper")
    redact = make_redactor(cfg)
    assert redact("mail bob@example.com card 4111 1111 1111 1111 ok") == "MAIL [REDACTED] CARD [REDACTED] OK"


def _upper(text: str) -> str:  # a redaction hook, referenced by name in the config above
    return text.upper()


def test_answers_from_bodies_and_streams():
    body = orjson.dumps({"choices": [{"message": {"content": "hi there"}}]})
    assert answer_from_body(body, "chat") == "hi there"
    assert answer_from_body(b"{}", "chat") is None
    sse = [b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
           b'data: {"choices":[{"index":0,"delta":{"content":"hel"}}]}\n\ndata: {"choices":[{"index":0,',
           b'"delta":{"content":"lo"}}]}\n\ndata: [DONE]\n\n']
    assert answer_from_sse(sse, "chat") == "hello"
    assert answer_from_sse([b'data: {"choices":[{"index":0,"text":"ok"}]}\n\n'], "completions") == "ok"
    assert generation_params({"model": "m", "messages": [], "temperature": 0.2, "stream": True,
                              "max_tokens": 9}) == {"temperature": 0.2, "max_tokens": 9}


def test_prompts_have_strict_verdict_format_and_reference_variant():
    msgs = pairwise_messages("2+2?", "4", "5", reference="4", category="math")
    assert "[[A]]" in msgs[0]["content"] and "Reference Answer" in msgs[1]["content"]
    plain = pairwise_messages("Write a poem", "a", "b", reference="x", category="writing")
    assert "Reference Answer" not in plain[1]["content"]
    assert question_text([{"role": "user", "content": "q1"}], None) == "q1"
