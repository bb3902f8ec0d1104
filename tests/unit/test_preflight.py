"""Preflight's pure parts: suite files, graders, the verdict, the gate in the state machine, the report."""

from __future__ import annotations

import pytest

from judges.preflight import graders, suite
from monitoring.policy import RolloutPolicy
from monitoring.preflight import verdict
from monitoring.report import Example, Interval, Report, html, markdown
from monitoring.sequential import Counts
from router import rollout
from router.state import AliasState, PreflightStamp, VersionRecord

MT_BENCH = ('{"question_id": 111, "category": "math", "turns": ["The vertices of a triangle are at (0, 0), (-1, 1), '
            'and (3, 3). What is the area?", "What is the area of the circle circumscribing it?"], '
            '"reference": ["Area is 3", "5pi"]}\n'
            '{"question_id": 81, "category": "writing", "turns": ["Compose a blog post.", "Rewrite it."]}\n')


def test_mt_bench_questions_load_as_is_and_the_hash_is_the_items():
    s = suite.parse(MT_BENCH, "mt_bench")
    assert s.categories == {"math": 1, "writing": 1}
    assert s.items[0].id == "111" and len(s.items[0].turns) == 2 and s.items[0].reference == "5pi"
    again = suite.parse(suite.dumps(s), "renamed-file")
    assert (again.id, again.hash) == (s.id, s.hash)  # the header names it; the items decide the hash
    changed = suite.parse(MT_BENCH.replace("5pi", "5 pi"), "mt_bench")
    assert changed.hash != s.hash


@pytest.mark.parametrize(("text", "why"), [
    ('{"id": 1, "category": "x"}', "exactly one of messages"),
    ("{oops", "line 1: not JSON"),
    ('{"id": 1, "category": "x", "prompt": "a"}\n{"id": 1, "category": "x", "prompt": "b"}', "more than once"),
    ("", "no items"),
])
def test_bad_suites_say_why(text, why):
    with pytest.raises(suite.SuiteError, match=why):
        suite.parse(text, "s")


def test_stratified_draw_is_reproducible_and_covers_every_category():
    records = [{"category": c, "messages": [{"role": "user", "content": f"{c} {i}"}], "question": "q"}
               for c in ("a", "b", "c") for i in range(20)] + [{"category": "d", "question": "only a question"}]
    one = suite.stratified(records, 5, seed=3)
    assert suite.stratified(list(reversed(records)), 5, seed=3) == one  # order of capture does not matter
    assert suite.make_suite("s", one).categories == {"a": 5, "b": 5, "c": 5, "d": 1}
    assert suite.stratified(records, 5, seed=4) != one


def test_graders():
    item = {"id": "1", "reference": "The answer is 1,250.5"}
    assert graders.build("numeric").outcome("so 1250.5", "I think 12", item) == (1, True, False)
    assert graders.build("exact").outcome("  the ANSWER is 1,250.5 ", "1250.5", item)[0] == 1
    assert graders.build("json").outcome('```json\n{"a": 1}\n```', "{'a': 1}", item) == (1, True, False)
    schema = graders.build({"type": "json_schema", "schema": {"type": "object", "required": ["name"]}})
    assert schema.outcome('{"age": 3}', '{"name": "x"}', item) == (-1, False, True)
    assert graders.build({"type": "regex", "pattern": r"^\d+$"}).outcome("42", "42", item) == (0, True, True)
    assert graders.build("json:loads").name == "json:loads"  # a user's module:function
    for bad in ("nope", {"type": "regex", "pattern": "("}, {"type": "json_schema", "schema": {"type": 5}},
                "no_such_module:f"):
        with pytest.raises(graders.GraderError):
            graders.build(bad)
    with pytest.raises(graders.GraderError, match="reference"):
        graders.build("numeric").outcome("1", "2", {"id": "x"})


def test_verdict_fails_exactly_the_breached_category():
    policy = RolloutPolicy.model_validate({"default_category": {"tolerance": 0.05},
                                           "preflight": {"thresholds": {"coding": 0.2}}})
    v = verdict(policy, {"math": Counts(1, 5, 34), "coding": Counts(2, 10, 5), "chat": Counts(0, 20, 0)},
                {"math": (40, 3, 37)}, {}, ["chat", "coding", "math", "empty"])
    assert v.failed == ["math", "empty"] and not v.passed
    assert v.categories["coding"].threshold == 0.2 and v.categories["coding"].passed  # -0.176 within 0.2
    assert v.categories["math"].established and v.categories["math"].upper < -0.05
    assert (v.categories["math"].candidate_passed, v.categories["math"].stable_passed) == (3, 37)
    lenient = policy.model_copy(update={"preflight": policy.preflight.model_copy(update={"fail_on": "established"})})
    assert verdict(lenient, {"coding": Counts(2, 10, 5)}, {}, {}, ["coding"]).passed  # not shown: passes


def _ctx(stamp: PreflightStamp | None, required: bool = True) -> rollout.Context:
    versions = {"v1": VersionRecord(name="v1", base_url="http://x/v1", model="a"),
                "v2": VersionRecord(name="v2", base_url="http://x/v1", model="b", preflight=stamp)}
    return rollout.Context(now=1000.0, stage_weights=[0, 50], versions=versions, preflight_required=required)


@pytest.mark.parametrize(("stamp", "message"), [
    (None, "has no preflight"),
    (PreflightStamp(run_id="r", suite_id="s@1", suite_hash="h", baseline="v1", passed=False, failed=["math"]),
     "failed its preflight .* on: math"),
    (PreflightStamp(run_id="r", suite_id="s@1", suite_hash="h", baseline="v0", passed=True), "against 'v0'"),
])
def test_the_gate_refuses_unless_forced(stamp, message):
    a = AliasState(name="bot", stable="v1")
    with pytest.raises(rollout.Refused, match=message) as e:
        rollout.start(a, "v2", _ctx(stamp))
    assert e.value.status == 409 and e.value.code == "preflight_required"
    assert rollout.start(a, "v2", _ctx(stamp), force=True)[0] == "rollout_started"
    assert rollout.start(a, "v2", _ctx(stamp, required=False))[0] == "rollout_started"
    assert rollout.set_split(a, "v2", 0, _ctx(stamp))[0] == "split_set"  # shadow serves nobody
    with pytest.raises(rollout.Refused):
        rollout.set_split(a, "v2", 5, _ctx(stamp))


def test_a_passed_preflight_against_the_stable_starts():
    ok = PreflightStamp(run_id="r", suite_id="s@1", suite_hash="h", baseline="v1", passed=True)
    assert rollout.start(AliasState(name="bot", stable="v1"), "v2", _ctx(ok))[1].candidate == "v2"


def test_reports_escape_everything_and_link_or_embed_their_css():
    r = Report(kind="preflight", title="<b>t</b>", facts=[("k", "<script>x</script>")], decision="d", passed=False,
               intervals=[Interval(category="m<a>", n=3, wins=0, ties=1, losses=2, estimate=-0.67, lower=-1, upper=0.2,
                                   threshold=0.05, status="fail")],
               examples=[Example(id="1", category="m", question="q|x", stable_answer="<img src=x>",
                                 candidate_answer="", decided_by="judge")])
    page = html(r)
    assert "<script>x" not in page and "&lt;img src=x&gt;" in page and "<style>" in page
    linked = html(r, stylesheet="/console/report.css")
    assert "<style>" not in linked and 'href="/console/report.css"' in linked and ' style="' not in linked
    md = markdown(r)
    assert "**FAIL**" in md and "| m<a> | 3 | 0/1/2 | -0.670 |" in md and "q|x" in md and "(empty)" in md
