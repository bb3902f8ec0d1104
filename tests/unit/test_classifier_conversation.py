"""Conversation folding, the shipped corpus, lexical features, calibration reports and the head's file
format, without the encoder (pure logic; the real model is tested in integration)."""

import numpy as np
import pytest

from router.classify.conversation import (
    DEFAULT_GATE,
    FOLLOW_UP,
    N_FEATURES,
    Batch,
    Slots,
    closing,
    fold,
    gate_matrix,
    gate_width,
    select_parts,
    sharpen,
    text_features,
)
from router.classify.corpus import FOLDS, corpus, fold_of
from router.classify.evaluation import calibration, report, row_kind
from router.classify.features import LexicalFeatures
from router.classify.head import Head
from router.classify.taxonomy import Category, Taxonomy, TaxonomyConfig
from router.classify.training import fit_gate, fit_sharpen, fit_temperature

# classes: math, writing, other, FOLLOW_UP
CLASSES = ("math", "writing", "other", FOLLOW_UP)
SLOTS = Slots.of(CLASSES)
MATH, WRITING = np.array([0.9, 0.04, 0.04, 0.02]), np.array([0.04, 0.9, 0.04, 0.02])
OTHER, FOLLOW = np.array([0.05, 0.05, 0.85, 0.05]), np.array([0.05, 0.15, 0.05, 0.75])
NONE = np.zeros(4)  # the probabilities of an empty part (no system prompt)


def label(parts, probs, gate=DEFAULT_GATE):
    return CLASSES[int(fold(Batch.of([parts], [probs], 4), gate, SLOTS)[0].argmax())]


def test_select_parts_keep_the_system_slot_first_even_when_blank():
    assert select_parts("  ", ["a", "b"]) == ["", "a", "b"]
    assert select_parts("sys", ["a"]) == ["sys", "a"]
    batch = Batch.of([["", "a"]], [[NONE, MATH]], 4)
    assert batch.mask.tolist() == [[False], [True]]
    assert label(["", "a"], [NONE, MATH]) == "math"


def test_a_legacy_one_row_gate_applies_to_every_turn():
    g = gate_matrix(DEFAULT_GATE, 4)
    assert g.shape == (2, gate_width(4)) and (g[0] == g[1]).all() and (g[:, N_FEATURES:] == 0).all()
    assert gate_matrix(g, 4) is g
    assert gate_matrix(np.zeros(3), 4)[0, :N_FEATURES].tolist() == DEFAULT_GATE.tolist()  # unknown shape: the prior


def test_fit_gate_learns_when_a_system_prompt_sets_the_task():
    # a task system prompt (writing) decides a vague first turn; a generic one (other) leaves it to the turn
    parts, probs, y = [], [], []
    for _ in range(150):
        parts += [["You edit text.", "ok here"], ["You are a helpful assistant.", "Solve 3x + 7 = 25"],
                  ["", "Solve 3x + 7 = 25", "and now?"]]
        probs += [[WRITING, OTHER], [OTHER, MATH], [NONE, MATH, FOLLOW]]
        y += [1, 0, 0]
    w = fit_gate(Batch.of(parts, probs, 4), np.array(y), SLOTS)
    assert w.shape == (2, gate_width(4))
    assert [label(p, q, w) for p, q in zip(parts[:3], probs[:3], strict=True)] == ["writing", "math", "math"]


def test_a_follow_up_inherits_and_a_long_confident_task_switches():
    first = "A train travels 300 km at 75 km/h and returns at 100 km/h. What is its average speed?"
    assert label(["", first, "Now make it more formal."], [NONE, MATH, FOLLOW]) == "math"
    switch = ("Thanks. Now write a four-stanza poem about the sea for my grandmother's birthday card, with a warm "
              "tone, simple words and a closing line that mentions her garden and the roses she grows every summer.")
    assert label(["", first, switch], [NONE, MATH, WRITING]) == "writing"
    # an uninformative start (a greeting) hands over to the first real task
    assert label(["", "hi", "Solve 3x + 7 = 25 for x, showing the steps"], [NONE, OTHER, MATH]) == "math"


def test_follow_up_is_never_a_label_and_a_first_turn_is_read_for_what_it_asks():
    # nothing before it to refer to: "what's different about 5G?" is a question, whatever it sounds like
    state = fold(Batch.of([["", "what's different about 5G?"]], [[NONE, FOLLOW]], 4), DEFAULT_GATE, SLOTS)[0]
    assert state[3] == 0 and CLASSES[int(state.argmax())] == "writing" and state.sum() == pytest.approx(1)
    assert state[1] == pytest.approx(0.15 / 0.25)
    # later, a turn's FOLLOW_UP mass counts as `other` in the mix (it asks for no capability of its own)
    state = fold(Batch.of([["", "hi", "shorter please"]], [[NONE, OTHER, FOLLOW]], 4), DEFAULT_GATE, SLOTS)[0]
    assert state[3] == 0 and CLASSES[int(state.argmax())] == "other"
    assert Slots.of(("math", "writing")).categories(MATH[:2]) is not None


def test_batch_pads_conversations_of_different_lengths():
    batch = Batch.of([["", "a"], ["", "b", "c", "d"]], [[NONE, MATH], [NONE, WRITING, FOLLOW, FOLLOW]], 4)
    assert batch.own.shape == (4, 2, 4)
    assert batch.mask.tolist() == [[False, False], [True, True], [False, True], [False, True]]
    state = fold(batch, DEFAULT_GATE, SLOTS)
    assert CLASSES[int(state[0].argmax())] == "math" and CLASSES[int(state[1].argmax())] == "writing"


def test_a_conversation_folds_the_same_alone_or_in_any_batch():
    # first parts at different steps (system slot, first turn, a later turn after empty ones), closings,
    # follow-ups and a conversation with nothing to read, under the default gate and a fitted-shape one
    convs = [(["", "a"], [NONE, MATH]),
             (["sys", "b", "c"], [WRITING, MATH, FOLLOW]),
             (["", "", "", "d"], [NONE, NONE, NONE, WRITING]),
             (["", "e", "thanks!", "f"], [NONE, MATH, WRITING, FOLLOW]),
             ([""], [NONE])]
    rng = np.random.default_rng(0)
    for gate in (DEFAULT_GATE, rng.normal(size=(2, gate_width(4)))):
        alone = np.concatenate([fold(Batch.of([p], [pr], 4), gate, SLOTS) for p, pr in convs])
        together = fold(Batch.of([p for p, _ in convs], [pr for _, pr in convs], 4), gate, SLOTS)
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)
        assert np.allclose(together.sum(axis=1), 1.0) and (together[:, 3] == 0).all()


def test_text_features_mark_referential_turns():
    assert text_features("and now in French?")[1] == 1.0
    assert text_features("Explain the causes of the First World War in detail")[1] == 0.0


def test_fit_gate_learns_to_inherit_from_labelled_conversations():
    rng = np.random.default_rng(0)
    parts, probs, y = [], [], []
    first = "Compute the integral of x squared from zero to three please"
    for _ in range(200):
        parts.append(["", first, "and now?"])
        probs.append([NONE, MATH, WRITING])
        y.append(0)  # the short follow-up belongs to the task
        parts.append(["", first, " ".join(["word"] * int(rng.integers(30, 60)))])
        probs.append([NONE, MATH, WRITING])
        y.append(1)  # a long new task switches
    w = fit_gate(Batch.of(parts, probs, 4), np.array(y), SLOTS)
    assert label(parts[0], probs[0], w) == "math" and label(parts[1], probs[1], w) == "writing"


def test_temperature_fixes_overconfident_logits():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), y] += 1.0
    t = fit_temperature(logits * 5, y)  # five times too sharp
    assert 3.5 < t < 7


def test_sharpen_restores_the_confidence_that_folding_blurs():
    state = np.array([[0.6, 0.3, 0.1, 0.0]])
    sharp = sharpen(state, 2.0)
    assert sharp[0, 0] > 0.6 and sharp[0, 3] == 0 and sharp.sum() == pytest.approx(1)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3000)
    blurred = np.full((3000, 3), 0.2)
    blurred[np.arange(3000), y] = 0.6  # right every time, yet only 60% sure: underconfident
    assert fit_sharpen(blurred, y) > 2


def test_corpus_is_deterministic_large_and_grouped_for_cross_validation():
    cats = frozenset(Taxonomy.build().names)
    rows = corpus(cats)
    assert rows == corpus.__wrapped__(cats)  # type: ignore[attr-defined]
    for c in cats:
        singles = [r for r in rows if r.category == c and r.kind == "single"]
        assert len(singles) >= 200, c
    assert sum(r.kind == "conversation" for r in rows) >= 1000
    assert {fold_of(r.group) for r in rows} == set(range(FOLDS))
    # a conversation's turns come from prompts of its own fold: no leak across cross-validation folds
    convs = [r for r in rows if r.kind == "conversation" and r.messages[0][0] == "user"]
    assert all(r.messages[-1][1] for r in convs)


def test_replacing_or_dropping_a_default_category_drops_its_corpus():
    tax = Taxonomy.build(TaxonomyConfig(drop=["roleplay"], categories=[Category(name="math", examples=["2+2"])]))
    rows = tax.training_set()
    assert not any(r.category == "roleplay" for r in rows)
    assert [r.messages for r in rows if r.category == "math"] == [(("user", "2+2"),)]


def test_lexical_features_weight_shared_tokens_and_bigrams_and_bound_the_work():
    docs = [[1, 2, 3], [1, 2, 4], [5, 6], [5, 7]]  # token ids, as the encoder's tokenizer gives them
    lex = LexicalFeatures.fit(docs, vocab=10)
    assert 1 in lex.columns and 3 not in lex.columns  # seen once: dropped (min_df=2)
    a, b = lex.matrix([[1, 2, 9]]), lex.matrix([[1, 2]])
    assert (a @ b.T).toarray()[0, 0] == pytest.approx(1.0)  # the unseen token adds nothing
    assert abs(np.linalg.norm(a.toarray()) - 1) < 1e-6
    assert lex.matrix([[8, 9], []]).nnz == 0
    assert lex.matrix([[1] * 100_000]).nnz <= 2  # one token and one bigram column, whatever the length
    # serving computes the logits without scipy: the same numbers as the fitted matrix
    coef = np.random.default_rng(2).normal(size=(3, lex.dim))
    batch = [[1, 2, 3, 1, 2], [5, 6, 5, 7], [], [9]]
    assert np.allclose(lex.logits(batch, coef), lex.matrix(batch) @ coef.T, atol=1e-6)


def test_head_round_trips_and_loads_legacy_files(tmp_path):
    lex = LexicalFeatures.fit([[1, 2, 3], [1, 2, 4], [3, 4, 5]], vocab=10, min_df=1)
    head = Head(("a", "b"), np.ones((2, 4), np.float32), np.zeros(2, np.float32), "static:x", lex,
                np.ones((2, lex.dim), np.float32), 0.5, np.arange(8.0))
    head.save(tmp_path / "h.npz")
    back = Head.load(tmp_path / "h.npz")
    assert back.temperature == 0.5 and back.gate.tolist() == list(range(8)) and back.lexical.dim == lex.dim
    np.savez(tmp_path / "old.npz", classes=np.array(["a", "b"]), coef=np.ones((2, 4)), intercept=np.zeros(2),
             embedder=np.array("static:x"))
    old = Head.load(tmp_path / "old.npz")
    assert old.lexical is None and old.temperature == 1.0
    assert old.proba(np.ones((1, 4)), [[1]]).shape == (1, 2)
    assert back.proba(np.ones((1, 4)), [[1, 2]]).shape == (1, 2)


def test_report_splits_by_kind_and_buckets_confidence():
    r = report(["single", "single", "conversation"], ["a", "b", "a"], ["a", "a", "other"], ["a", "a", "a"],
               [0.95, 0.6, 0.35])
    assert r["all"]["n"] == 3 and r["single"]["accuracy"] == 0.5 and r["conversation"]["accuracy"] == 0.0
    buckets = {b["from"]: b for b in r["all"]["calibration"]["buckets"]}
    assert buckets[0.95]["accuracy"] == 1.0 and buckets[0.5]["accuracy"] == 0.0 and buckets[0.3]["n"] == 1
    assert calibration([True], [1.0])["buckets"][0]["to"] == 1.0
    assert row_kind(["user"]) == "single" and row_kind(["system", "user"]) == "conversation"
    assert row_kind(["user", "assistant", "user"]) == "conversation"


@pytest.mark.parametrize("text", ["thanks, that's perfect", "lol ok", "who made you?", "are you gpt-4?", "asdfghjk",
                                  "zzzzzz", "👍", "merci !", "great, all good, bye", "ok I'm done, gotta go",
                                  "thanks, works now!", "Merci beaucoup, bonne journée !", "is this chat private?",
                                  "can you speak other languages?", "do you store what I type?"])
def test_closing_turns_exercise_no_capability(text):
    assert closing(text) and text_features(text)[2] == 1.0


@pytest.mark.parametrize("text", ["thanks, now make it shorter", "ok and now?", "why?", "descending please",
                                  "perfect, but in French", "who made the first computer?", "great, one more",
                                  "can you save this as csv", "it works but it's slow, why?"])
def test_follow_ups_and_tasks_are_not_closing_turns(text):
    assert not closing(text)


def test_a_closing_turn_after_a_task_is_other_whatever_the_model_says():
    first = "Solve 3x + 7 = 25 for x"
    assert label(["", first, "thanks, that's perfect"], [NONE, MATH, MATH]) == "other"
    assert label(["", first, "and for 3x + 7 = 31?"], [NONE, MATH, FOLLOW]) == "math"


def test_a_gate_fitted_before_the_closing_feature_still_loads():
    old = np.arange(2 * (N_FEATURES - 1 + 4), dtype=np.float64).reshape(2, -1)
    g = gate_matrix(old, 4)
    assert g.shape == (2, gate_width(4)) and (g[:, N_FEATURES - 1] == 0).all() and (g[:, N_FEATURES + 4:] == 0).all()
    assert (g[:, N_FEATURES:N_FEATURES + 4] == old[:, N_FEATURES - 1:]).all()  # the state's weights kept
