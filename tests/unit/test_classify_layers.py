import pytest

from router.classify.evaluation import evaluate
from router.classify.layers import InvalidCategory, decide_before_model, explicit_category, threshold
from router.classify.prompt import MAX_CHARS, prompt_parts
from router.classify.taxonomy import (
    OTHER,
    UNCLASSIFIED,
    Category,
    CompiledRules,
    Rule,
    Taxonomy,
    TaxonomyConfig,
)

DEFAULTS = {"reasoning", "math", "coding", "extraction", "summarization", "writing", "roleplay", "knowledge", OTHER}


def test_default_taxonomy_covers_required_categories_with_examples():
    tax = Taxonomy.build()
    assert set(tax.names) == DEFAULTS
    assert all(len(c.examples) >= 15 for c in tax.categories)
    assert UNCLASSIFIED in tax.labels() and UNCLASSIFIED not in tax.names


def test_users_add_replace_and_drop_categories():
    cfg = TaxonomyConfig(drop=["roleplay"], categories=[
        Category(name="support", description="help with our product", examples=["my invoice is wrong"],
                 rules=[Rule(pattern=r"ACME support", scope="system")]),
        Category(name="math", description="replaced", examples=["2+2"]),
    ])
    tax = Taxonomy.build(cfg)
    assert "roleplay" not in tax.names and "support" in tax.names
    assert next(c for c in tax.categories if c.name == "math").examples == ["2+2"]
    only = Taxonomy.build(TaxonomyConfig(use_defaults=False, categories=[Category(name="support")]))
    assert only.names == ("support", OTHER)


def test_invalid_rule_and_name_are_rejected():
    with pytest.raises(ValueError, match="invalid regex"):
        Rule(pattern="(unclosed")
    with pytest.raises(ValueError):
        Category(name="Bad Name!")


def test_layers_first_match_wins():
    tax = Taxonomy.build(TaxonomyConfig(categories=[
        Category(name="support", rules=[Rule(pattern=r"you are the ACME help desk", scope="system")]),
        Category(name="coding", rules=[Rule(pattern=r"^```", scope="last_user")]),
    ]))
    rules = CompiledRules.of(tax)
    body = {"messages": [{"role": "system", "content": "You are the ACME help desk."},
                         {"role": "user", "content": "```py\nprint(1)```"}]}
    parts = prompt_parts(body)
    assert decide_before_model("math", rules, parts).layer == "explicit"
    label = decide_before_model(None, rules, parts)
    # rules are tried in taxonomy order; a replaced default keeps its place (coding comes before support)
    assert (label.category, label.layer) == ("coding", "rule")
    body["messages"][1]["content"] = "my order never arrived"
    assert decide_before_model(None, rules, prompt_parts(body)).category == "support"
    plain = prompt_parts({"messages": [{"role": "user", "content": "what is love"}]})
    assert decide_before_model(None, rules, plain) is None  # goes to the model
    empty = prompt_parts({"messages": [{"role": "user", "content": "  "}]})
    assert decide_before_model(None, rules, empty).category == OTHER


def test_explicit_category_from_header_or_metadata_allowed_values_only():
    allowed = Taxonomy.build().names
    assert explicit_category({"x-cliffguard-category": "Math "}, {}, allowed) == "math"
    assert explicit_category({}, {"metadata": {"cliffguard_category": "coding"}}, allowed) == "coding"
    assert explicit_category({}, {"metadata": {"other": 1}}, allowed) is None
    # the client's own free-form metadata is not ours: `category` is neither read nor refused
    assert explicit_category({}, {"metadata": {"category": "cooking"}}, allowed) is None
    with pytest.raises(InvalidCategory, match="x-cliffguard-category"):
        explicit_category({"x-cliffguard-category": "cooking"}, {}, allowed)
    with pytest.raises(InvalidCategory, match="metadata.cliffguard_category"):
        explicit_category({}, {"metadata": {"cliffguard_category": 7}}, allowed)


def test_threshold_falls_back_to_other():
    assert threshold("math", 0.9, 0.3).category == "math"
    low = threshold("math", 0.1, 0.3)
    assert (low.category, low.layer) == (OTHER, "threshold")


def test_prompt_parts_read_system_and_user_turns_not_assistant_turns():
    long_q = "Write a Python function that parses ISO dates and returns datetime objects."
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": long_q},
                         {"role": "assistant", "content": "def parse(s): ..."},
                         {"role": "user", "content": "and in Rust?"}]}
    parts = prompt_parts(body)
    assert parts.last_user == "and in Rust?" and parts.system == "Be brief."
    assert parts.model_parts() == ("Be brief.", long_q, "and in Rust?")
    parts2 = prompt_parts({"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"},
                                                                      {"type": "image_url", "image_url": {}}]}]})
    assert parts2.last_user == "hello" and parts2.model_parts() == ("", "hello")  # the system slot stays
    assert prompt_parts({"prompt": ["first", "second"]}).last_user == "first"


def test_long_conversations_keep_the_first_and_the_last_user_turns():
    turns = [f"turn {i}" for i in range(10)]
    body = {"messages": [m for t in turns for m in ({"role": "user", "content": t},
                                                    {"role": "assistant", "content": "ok"})][:-1]}
    assert prompt_parts(body).model_parts() == ("", "turn 0", "turn 7", "turn 8", "turn 9")
    huge = prompt_parts({"prompt": "x" * 100_000}).model_parts()
    assert len(huge[1]) == MAX_CHARS


def test_evaluate_reports_accuracy_precision_recall_confusion():
    r = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert r["accuracy"] == 0.75
    assert r["per_category"]["a"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert r["per_category"]["b"]["precision"] == round(2 / 3, 4)
    assert r["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"b": 2}}
