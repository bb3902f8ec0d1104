import json

from typer.testing import CliRunner

from gateway.cli import app

runner = CliRunner()
KEYS = {"runs", "rollback_rate", "promotion_rate", "median_pairs_to_rollback", "p95_pairs_to_rollback", "categories",
        "median_pairs_to_complete", "p95_pairs_to_complete", "weight_pct_at_rollback", "outcome_by_stage"}


def run(*args):
    r = runner.invoke(app, ["simulate", "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_json_report_and_detection():
    rep = run("--effects", "reasoning=-0.10", "--runs", "200", "--seed", "3")
    assert set(rep) >= KEYS and rep["runs"] == 200
    assert rep["rollback_rate"] >= 0.95 and rep["median_pairs_to_rollback"] <= 1000
    # caught before the candidate served more than 5% of the traffic: the gates hold it back meanwhile
    w = rep["weight_pct_at_rollback"]
    assert w["p95"] <= 5 and sum(w["runs"].values()) == round(rep["rollback_rate"] * 200)
    assert rep["median_pairs_to_complete"] is None  # never completes
    cats = rep["categories"]
    assert len(cats) == 8 and cats["reasoning"]["rollback_rate"] >= 0.95
    assert set(cats["math"]) >= {"rollback_rate", "promotion_rate", "median_pairs_to_rollback", "p95_pairs_to_rollback"}


def test_no_effect_rarely_rolls_back_but_naive_checks_do():
    rep = run("--runs", "200", "--seed", "4")
    assert rep["rollback_rate"] <= 0.05
    # a good candidate reaches 100% in thousands of pairs, not tens of thousands
    assert rep["promotion_rate"] >= 0.95 and rep["median_pairs_to_complete"] <= 5000
    naive = run("--runs", "200", "--seed", "4", "--method", "threshold")
    assert naive["rollback_rate"] > 0.5


def test_promotion_with_a_generous_tolerance_and_pin_category_policy(tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text("min_bake_s: 0\nmin_pairs_per_stage: 50\non_regression: pin_category\n")
    rep = run("--policy", str(pol), "--tolerance", "0.15", "--effects", "coding=-0.4", "--runs", "100",
              "--categories", "3", "--max-pairs", "3000")
    assert rep["promotion_rate"] >= 0.9  # coding pinned to stable, the others promote
    assert rep["categories"]["coding"]["pinned_rate"] >= 0.9
    assert len(rep["median_pairs_per_category_at_stage"]) == 6


def test_bad_arguments_are_clear_errors(tmp_path):
    r = runner.invoke(app, ["simulate", "--effects", "nope=-0.1"])
    assert r.exit_code == 2 and "nope" in r.output
    r = runner.invoke(app, ["simulate", "--effects", "reasoning"])
    assert r.exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("alpha: 2\n")
    r = runner.invoke(app, ["simulate", "--policy", str(bad)])
    assert r.exit_code == 2 and "alpha" in r.output
