"""Preflight with two real vLLM CPU servers as the versions and programmatic graders: the tiny models fail
the numeric checks (random weights); what is shown is the path: the replay, the per-category verdict on the
candidate's registry record, the report, and `rollout start` following the verdict."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli.main import app
from tests.support.vllm import versions

pytestmark = pytest.mark.e2e
ADMIN = {"authorization": "Bearer admin-secret"}


def test_preflight_on_real_vllm_with_graders(vllm_pair, gateway_factory, redis_srv, key_prefix, tmp_path):
    controller = {"policy": {"preflight": {"required": True}, "default_category": {"tolerance": 0.05}}}
    gw = gateway_factory(versions(*vllm_pair), [{"name": "bot", "stable": "base-v1"}], controller=controller)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_srv.url, "key_prefix": key_prefix,
                                      "controller": controller}))
    rows = [{"id": f"add{i}", "category": "math", "prompt": f"What is {i} + {2 * i}? Answer with a number.",
             "reference": str(3 * i), "grader": "numeric"} for i in range(1, 7)]
    rows += [{"id": f"json{i}", "category": "extraction", "prompt": f"Give JSON with the field id={i}.",
              "grader": {"type": "json_schema", "schema": {"type": "object", "required": ["id"]}}} for i in range(4)]
    rows += [{"id": f"re{i}", "category": "writing", "prompt": f"Write a word about the sea ({i}).",
              "grader": {"type": "regex", "pattern": r"\w"}} for i in range(4)]
    suite = tmp_path / "suite.jsonl"
    suite.write_text("\n".join(orjson.dumps(r).decode() for r in rows))

    run = CliRunner().invoke(app, ["preflight", "--alias", "bot", "--candidate", "perturbed", "--suite", str(suite),
                                   "--max-tokens", "12", "--concurrency", "4", "-c", str(config)])
    assert run.exit_code in (0, 1), run.output
    data = httpx.get(f"{gw.url}/admin/reports/preflight/perturbed?format=json", headers=ADMIN).json()
    rows_by = {iv["category"]: iv for iv in data["intervals"]}
    assert set(rows_by) == {"math", "extraction", "writing"} and sum(iv["n"] for iv in rows_by.values()) == 14
    assert "checks passed: candidate" in rows_by["math"]["note"]  # graded, with each version's pass count
    passed = run.exit_code == 0
    deadline = time.monotonic() + 5
    while (stamp := httpx.get(f"{gw.url}/admin/versions/perturbed", headers=ADMIN).json()["preflight"]) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stamp["passed"] is passed and stamp["baseline"] == "base-v1" and stamp["items"] == 14

    html = CliRunner().invoke(app, ["report", "preflight", stamp["run_id"], "--format", "html", "-o",
                                    str(tmp_path / "r.html"), "-c", str(config)])
    assert html.exit_code == 0 and "<svg" in (tmp_path / "r.html").read_text()
    r = httpx.post(f"{gw.url}/admin/aliases/bot/rollout", headers=ADMIN, json={"candidate": "perturbed"})
    assert r.status_code == (200 if passed else 409), r.text
