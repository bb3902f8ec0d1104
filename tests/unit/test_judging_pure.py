import math

import orjson
import pytest

from judges import answers
from judges.answers import Answer, ToolCall
from judges.prompts import pairwise_messages, question_text
from judges.records import PAIR_IDENTIFIERS, SAMPLE_IDENTIFIERS, PairResult, Sample, generation_params
from judges.redaction import Redactor
from judges.sampling import LocalBudget, Sampler, SamplingConfig, unit_hash
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


def test_stratified_sampling_gives_rare_categories_as_many_samples_at_the_same_overall_rate():
    s = Sampler(SamplingConfig(default_rate=0.05, min_per_window=0))
    mix = ["coding"] * 80 + ["writing"] * 15 + ["math"] * 5  # 80% / 15% / 5% of the traffic
    taken: dict[str, int] = {}
    for i in range(40_000):
        cat = mix[i % 100]
        taken[cat] = taken.get(cat, 0) + s.decide(f"r{i}", cat)
    total = sum(taken.values())
    assert abs(total - 0.05 * 40_000) < 0.15 * 0.05 * 40_000  # the overall rate holds
    assert max(taken.values()) < 1.3 * min(taken.values())  # about equal per category
    assert s.rate("math") > 0.3 and s.rate("coding") < 0.03
    plain = Sampler(SamplingConfig(default_rate=0.05, min_per_window=0, stratify=False))
    assert plain.rate("math") == 0.05


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
    redact = Redactor.from_config(cfg)
    assert redact.text("mail bob@example.com card 4111 1111 1111 1111 ok") == "MAIL [REDACTED] CARD [REDACTED] OK"


PII = "jane.doe@example.com"


def test_redaction_walks_every_field_of_a_sample_and_a_pair():
    redact = Redactor.from_config(SamplingConfig())
    messages = [
        {"role": "system", "content": f"user is {PII}"},
        {"role": "user", "content": [{"type": "text", "text": f"mail {PII}"},
                                     {"type": "image_url", "image_url": {"url": f"https://x/{PII}.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": f'{{"email": "{PII}"}}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": f"found {PII}"},
    ]
    sample = Sample(request_id="a" * 24, alias="bot", rollout_id="v2@1", category="math", endpoint="chat",
                    served_version="v1", served_arm="stable", stable="v1", candidate="v2", messages=messages,
                    prompt=[f"p {PII}", [1, 2]], answer=Answer(text=f"to {PII}", tool_calls=[
                        ToolCall(name="send", arguments=f'{{"to": "{PII}"}}')]),
                    params={"tools": [{"function": {"description": f"by {PII}"}}], "seed": 4111111111111111},
                    reference=f"ref {PII}", client_request_id=PII, ts=1.0)
    out = redact.record(sample, SAMPLE_IDENTIFIERS)
    assert PII not in out.model_dump_json() and "[REDACTED]" in out.messages[1]["content"][0]["text"]
    assert out.request_id == "a" * 24 and out.params["seed"] == 4111111111111111  # ours, and numbers, kept
    assert out.messages[2]["tool_calls"][0]["function"]["name"] == "lookup"
    pair = PairResult(request_id="r", alias="bot", rollout_id="x", category="math", mode="pairwise", stable="v1",
                      candidate="v2", question=PII, stable_answer=Answer(text=PII), candidate_answer=Answer(
                          tool_calls=[ToolCall(name="f", arguments=PII)]), verdicts=["A", "B"],
                      judge_explanations=[f"A quotes {PII}"], judge_model="j", client_request_id=PII, ts=1.0)
    stored = redact.record(pair, PAIR_IDENTIFIERS)
    assert PII not in stored.model_dump_json() and stored.verdicts == ["A", "B"]


def test_local_budget_stops_a_process_at_the_budget_of_each_second_and_day():
    b = LocalBudget(per_second=3, per_day=7)
    day = 86400 * 20_000.0
    assert [b.take(day + 0.1) for _ in range(5)] == [True] * 3 + [False] * 2
    assert [b.take(day + 1.5) for _ in range(4)] == [True] * 3 + [False]  # a new second
    assert [b.take(day + 2.5) for _ in range(2)] == [True, False]  # 7 today: the day's budget is spent
    assert b.take(day + 86400.0)  # the next day


def _upper(text: str) -> str:  # a redaction hook, referenced by name in the config above
    return text.upper()


def test_answers_from_bodies_and_streams():
    body = orjson.dumps({"choices": [{"message": {"content": "hi there"}}]})
    assert answers.from_body(body, "chat") == Answer(text="hi there")
    assert answers.from_body(b"{}", "chat") is None
    sse = [b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
           b'data: {"choices":[{"index":0,"delta":{"content":"hel"}}]}\n\ndata: {"choices":[{"index":0,',
           b'"delta":{"content":"lo"}}]}\n\ndata: [DONE]\n\n']
    assert answers.from_sse(sse, "chat") == Answer(text="hello")
    assert answers.from_sse([b'data: {"choices":[{"index":0,"text":"ok"}]}\n\n'], "completions") == Answer(text="ok")
    assert generation_params({"model": "m", "messages": [], "temperature": 0.2, "stream": True,
                              "max_tokens": 9}) == {"temperature": 0.2, "max_tokens": 9}


TOOL_MESSAGE = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}


def test_tool_call_answers_are_answers_not_empty():
    body = orjson.dumps({"choices": [{"index": 0, "message": TOOL_MESSAGE, "finish_reason": "tool_calls"}]})
    a = answers.from_body(body, "chat")
    assert a == Answer(text="", tool_calls=[ToolCall(name="get_weather", arguments='{"city": "Oslo"}')])
    assert not a.empty and a.render() == '[tool call] get_weather({"city": "Oslo"})'
    # streamed: the name once, the arguments in pieces, merged by index (two calls)
    events = [{"role": "assistant", "content": None},
              {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
              {"tool_calls": [{"index": 1, "id": "c2", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}]
    sse = [b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": d}]}) + b"\n\n" for d in events]
    streamed = answers.from_sse([*sse, b"data: [DONE]\n\n"], "chat")
    assert streamed is not None and [c.name for c in streamed.tool_calls] == ["get_weather", "get_time"]
    assert streamed.same_as(a.model_copy(update={"tool_calls": [*a.tool_calls, ToolCall(name="get_time",
                                                                                          arguments="{ }")]}))
    assert not streamed.same_as(a)
    assert Answer(text=" the same\n words ").same_as(Answer(text="the same words"))


def test_records_written_before_tool_calls_still_load():
    old = {"request_id": "r", "alias": "a", "rollout_id": "x", "category": "math", "endpoint": "chat",
           "served_version": "v1", "served_arm": "stable", "stable": "v1", "candidate": "v2", "answer": "42", "ts": 1.0}
    assert Sample.model_validate(old).answer == Answer(text="42")
    pair = PairResult.model_validate({**old, "mode": "pairwise", "question": "q", "stable_answer": "a",
                                      "candidate_answer": None, "judge_model": "j"})
    assert pair.stable_answer == Answer(text="a") and pair.decided_by == "judge"


def test_prompts_have_strict_verdict_format_and_reference_variant():
    msgs = pairwise_messages("2+2?", "4", "5", reference="4", category="math")
    assert "[[A]]" in msgs[0]["content"] and "Reference Answer" in msgs[1]["content"]
    plain = pairwise_messages("Write a poem", "a", "b", reference="x", category="writing")
    assert "Reference Answer" not in plain[1]["content"]
    assert question_text([{"role": "user", "content": "q1"}], None) == "q1"
