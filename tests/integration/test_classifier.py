"""The real classifier (all-MiniLM-L6-v2 from the PyPI package, CPU): quality on our labelled set, the
CLI round trip, offline loading, and labels through the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from tests.support.metrics import sample, scrape

REPO = Path(__file__).resolve().parents[2]
EVAL = REPO / "bench" / "data" / "classifier_eval.jsonl"
DEV = REPO / "bench" / "data" / "classifier_dev.jsonl"
# docs/benchmarks.md reports the shipped default on these sets; the floors leave a little room
REPORTED = {"eval": 0.93, "dev_single": 0.88, "dev_conversation": 0.85}
CLI = [sys.executable, "-m", "gateway.cli"]


def offline_env(tmp_path: Path) -> dict[str, str]:
    # HF_HUB_OFFLINE and an endpoint nothing listens on: any hub access would fail loudly
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIFFGUARD_")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
            "HF_HOME": str(tmp_path / "hf-home"), "CLIFFGUARD_DATA_DIR": str(tmp_path / "data")}


def run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=offline_env(tmp_path), timeout=300,
                          cwd=tmp_path)


def test_default_classifier_accuracy_on_our_labelled_set(tmp_path):
    r = run_cli(["classifier", "eval", str(EVAL), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == 250 and report["accuracy"] >= REPORTED["eval"]
    assert set(report["per_category"]) >= {"reasoning", "math", "coding", "extraction", "summarization",
                                           "writing", "roleplay", "knowledge", "other"}
    assert all(v["recall"] >= 0.7 for v in report["per_category"].values())
    assert report["confusion"]["math"]["math"] >= 24
    assert report["calibration"]["ece"] <= 0.1 and sum(b["n"] for b in report["calibration"]["buckets"]) == 250


def test_dev_set_single_prompts_and_conversations_reported_separately(tmp_path):
    r = run_cli(["classifier", "eval", str(DEV), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    kinds = json.loads(r.stdout)["by_kind"]
    assert kinds["single"]["accuracy"] >= REPORTED["dev_single"]
    assert kinds["conversation"]["accuracy"] >= REPORTED["dev_conversation"]
    assert kinds["conversation"]["n"] >= 50 and "calibration" in kinds["conversation"]


def test_fit_eval_classify_round_trip_offline(tmp_path):
    data = tmp_path / "support.jsonl"
    rows = [{"prompt": p, "category": "support"} for p in (
        "My invoice shows a double charge for March", "How do I reset my account password?",
        "The app logs me out every time I open settings", "Can I get a refund for my annual plan?",
        "Where do I change the billing address on my subscription?", "Your courier lost my parcel")]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = tmp_path / "cg.yaml"
    cfg.write_text("classifier:\n  taxonomy:\n    categories:\n      - name: support\n"
                   "        description: Customer support for our product (billing, accounts, delivery).\n")
    art = tmp_path / "support.npz"
    r = run_cli(["classifier", "fit", str(data), "--out", str(art), "--config", str(cfg)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert art.exists()
    r = run_cli(["classify", "I was charged twice for my subscription this month", "--artifact", str(art),
                 "--config", str(cfg)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "support" in r.stdout and "embedding" in r.stdout
    r = run_cli(["classifier", "eval", str(data), "--artifact", str(art), "--config", str(cfg)], tmp_path)
    assert r.returncode == 0 and "accuracy" in r.stdout and "confusion" in r.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "category": "cooking"}\n')
    r = run_cli(["classifier", "fit", str(bad), "--config", str(cfg)], tmp_path)
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr and "Traceback" not in r.stderr
    bad.write_text('{"prompt": "x", "category": "support"}\n'
                   '{"messages": [{"role": "assistant"}], "category": "support"}\n')
    r = run_cli(["classifier", "eval", str(bad), "--config", str(cfg)], tmp_path)
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr and "messages" in r.stderr and "Traceback" not in r.stderr


def test_conversations_in_fit_eval_and_classify(tmp_path):
    """Rows with OpenAI `messages`: a follow-up is labelled with the conversation's capability."""
    conv = [{"role": "user", "content": "A train travels 240 km in 3 hours. What is its average speed?"},
            {"role": "assistant", "content": "80 km/h."},
            {"role": "user", "content": "What if the speed doubles?"}]
    data = tmp_path / "conv.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in (
        {"messages": conv, "category": "math"}, {"prompt": "Write a haiku about rain", "category": "writing"})))
    r = run_cli(["classifier", "eval", str(data), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["by_kind"]["conversation"]["n"] == 1 and report["by_kind"]["single"]["n"] == 1
    assert report["by_kind"]["conversation"]["accuracy"] == 1.0
    (tmp_path / "conv.json").write_text(json.dumps({"model": "x", "messages": conv}))
    r = run_cli(["classify", "--messages", str(tmp_path / "conv.json")], tmp_path)
    assert r.returncode == 0 and "math" in r.stdout, r.stderr
    r = subprocess.run([*CLI, "classify", "--messages", "-"], input=json.dumps(conv), capture_output=True, text=True,
                       env=offline_env(tmp_path), timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "math" in r.stdout, r.stderr
    r = subprocess.run([*CLI, "classify", "--messages", "-"], input="[{]", capture_output=True, text=True,
                       env=offline_env(tmp_path), timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "expected a JSON list" in r.stderr and "Traceback" not in r.stderr
    art = tmp_path / "conv.npz"
    r = run_cli(["classifier", "fit", str(data), "--out", str(art)], tmp_path)
    assert r.returncode == 0 and art.exists(), r.stderr


@pytest.mark.parametrize("encoder", ["static", "contextual"])
def test_model_loads_with_network_unreachable(tmp_path, encoder):
    # an empty cache: the static table is distilled from the transformer, loaded offline, right here. A
    # small taxonomy keeps the head's fit short (the default one is fitted on the shipped corpus, tested above)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("classifier:\n  taxonomy:\n    use_defaults: false\n    categories:\n"
                   "      - {name: math, examples: ['Solve 3x - 4 = 8', 'What is 12 times 7?', 'Integrate x^2']}\n"
                   "      - {name: writing, examples: ['Write a poem about rain', 'Draft an email to my boss']}\n")
    env = {**offline_env(tmp_path), "CLIFFGUARD_CLASSIFIER__CACHE_DIR": str(tmp_path / "fresh-cache"),
           "CLIFFGUARD_CLASSIFIER__ENCODER": encoder}
    r = subprocess.run([*CLI, "classify", "Solve 2x + 3 = 11 for x.", "--config", str(cfg)], capture_output=True,
                       text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "math" in r.stdout


def fake_pair(backend_factory):
    _, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft")
    return [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
            {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}]


PROMPTS = {
    "math": "What is the integral of x squared from 0 to 3?",
    "coding": "Write a Python function that reverses a linked list.",
    "writing": "Write a short poem about the autumn wind.",
    "summarization": "Summarize the following article in three bullet points: ...",
}


async def test_concurrent_requests_get_correct_labels_in_metrics(backend_factory, gateway_factory):
    gw = gateway_factory(fake_pair(backend_factory), [{"name": "bot", "stable": "v1"}])
    before = {c: scrape(gw.url, "cliffguard_requests_total", alias="bot", category=c) for c in PROMPTS}
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as h:
        rs = await asyncio.gather(*[
            h.post("/v1/chat/completions", json={"model": "bot", "stream": i % 2 == 0,
                                                 "messages": [{"role": "user", "content": f"{p} (#{i})"}]})
            for i in range(10) for p in PROMPTS.values()])
    assert all(r.status_code == 200 for r in rs)
    # metrics are recorded after the client has its last byte: give the handlers a moment
    await asyncio.sleep(0.5)
    text = httpx.get(f"{gw.url}/metrics").text
    for c in PROMPTS:
        assert sample(text, "cliffguard_requests_total", alias="bot", category=c) - before[c] == 10, (c, [
            ln for ln in text.splitlines() if ln.startswith("cliffguard_requests_total")])
    assert scrape(gw.url, "cliffguard_classifier_batch_size_count") > 0
    # classifier health: every label's confidence, per alias and arm
    assert scrape(gw.url, "cliffguard_classifier_confidence_count", alias="bot", arm="stable",
                  layer="embedding") >= 30


def test_follow_up_turn_is_labelled_with_the_conversation(backend_factory, gateway_factory):
    gw = gateway_factory(fake_pair(backend_factory), [{"name": "bot", "stable": "v1"}])
    history = [{"role": "user", "content": "Summarize this: the council approved the budget, delayed the "
                                           "new library and raised parking fees by ten percent."},
               {"role": "assistant", "content": "The council passed the budget and raised parking fees."}]
    before = scrape(gw.url, "cliffguard_requests_total", alias="bot", category="summarization")
    for follow in ("Now make it more formal.", "shorter please"):
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={
            "model": "bot", "messages": [*history, {"role": "user", "content": follow}]})
        assert r.status_code == 200
    time.sleep(0.5)
    assert scrape(gw.url, "cliffguard_requests_total", alias="bot", category="summarization") - before == 2


def test_category_header_and_rules(backend_factory, gateway_factory):
    tax = {"categories": [{"name": "support", "rules": [{"pattern": "ACME help desk", "scope": "system"}]}]}
    gw = gateway_factory(fake_pair(backend_factory), [{"name": "bot", "stable": "v1"}],
                         classifier={"taxonomy": tax})
    msgs = [{"role": "user", "content": "Write a haiku."}]
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": msgs},
                   headers={"x-cliffguard-category": "cooking"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_category" and err["param"] == "the x-cliffguard-category header"
    assert "support" in err["message"]
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": msgs,
                                                          "metadata": {"cliffguard_category": 5}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata.cliffguard_category"
    before = scrape(gw.url, "cliffguard_classifications_total", category="math", layer="explicit")
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": msgs},
                   headers={"x-cliffguard-category": "math"})
    assert r.status_code == 200
    assert scrape(gw.url, "cliffguard_classifications_total", category="math", layer="explicit") - before == 1
    before = scrape(gw.url, "cliffguard_classifications_total", category="support", layer="rule")
    sys_msgs = [{"role": "system", "content": "You are the ACME help desk."}, *msgs]
    httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "bot", "messages": sys_msgs})
    assert scrape(gw.url, "cliffguard_classifications_total", category="support", layer="rule") - before == 1


def test_pinned_category_is_routed_to_stable(backend_factory, gateway_factory, redis_srv, key_prefix):
    gw = gateway_factory(fake_pair(backend_factory),
                         [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 100}])
    raw = redis_sync.Redis.from_url(redis_srv.url)
    state = json.loads(raw.hget(f"{key_prefix}:aliases", "bot"))
    raw.hset(f"{key_prefix}:aliases", "bot", json.dumps({**state, "pinned_categories": ["math"]}))
    raw.incr(f"{key_prefix}:rev")
    time.sleep(0.5)

    def version(prompt: str) -> str:
        r = httpx.post(f"{gw.url}/v1/chat/completions",
                       json={"model": "bot", "messages": [{"role": "user", "content": prompt}]})
        return r.headers["x-cliffguard-version"]
    assert version(PROMPTS["math"]) == "v1"  # pinned to stable
    assert version(PROMPTS["coding"]) == "v2"  # the candidate keeps the other categories


def test_a_label_late_for_a_pinned_alias_goes_to_stable(backend_factory, gateway_factory, redis_srv, key_prefix):
    # fail closed: a request whose category is not known in time may be of the pinned category
    gw = gateway_factory(fake_pair(backend_factory),
                         [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 100}],
                         classifier={"pin_wait_ms": 0})
    raw = redis_sync.Redis.from_url(redis_srv.url)
    state = json.loads(raw.hget(f"{key_prefix}:aliases", "bot"))
    raw.hset(f"{key_prefix}:aliases", "bot", json.dumps({**state, "pinned_categories": ["math"]}))
    raw.incr(f"{key_prefix}:rev")
    time.sleep(0.5)
    before = scrape(gw.url, "cliffguard_pinned_to_stable_total", alias="bot", reason="label_late")
    late = httpx.post(f"{gw.url}/v1/chat/completions",
                      json={"model": "bot", "messages": [{"role": "user", "content": PROMPTS["coding"] + " (late)"}]})
    assert late.headers["x-cliffguard-version"] == "v1"
    assert scrape(gw.url, "cliffguard_pinned_to_stable_total", alias="bot", reason="label_late") - before == 1
    labelled = httpx.post(f"{gw.url}/v1/chat/completions", headers={"x-cliffguard-category": "coding"},
                          json={"model": "bot", "messages": [{"role": "user", "content": "anything"}]})
    assert labelled.headers["x-cliffguard-version"] == "v2"  # known at once: not pinned, stays on candidate
