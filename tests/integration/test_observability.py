"""Prometheus rules and Grafana dashboards against real tools: promtool, and a real Prometheus server
scraping a running gateway (with the controller) and a judge worker that have served and judged traffic.
Every dashboard panel's query and every recording rule must return data: no silently empty panel."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.integration.test_serve import start, stop, wait_up
from tests.support.fake_judge import FakeJudge
from tests.support.servers import ThreadServer, free_port

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: scripts/test.sh installs Debian's prometheus package"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_promtool_checks_rules_config_and_alert_unit_tests():
    for args in (["check", "rules", "rules.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "rules_test.yml"]):
        r = promtool(*args)
        assert r.returncode == 0, r.stdout + r.stderr
    alerts = {r["alert"] for g in yaml.safe_load((PROM / "rules.yml").read_text())["groups"] for r in g["rules"]
              if "alert" in r}
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "rules_test.yml").read_text()))
    assert alerts == tested  # every alert has a unit test


def test_committed_dashboards_are_what_the_code_generates():
    sys.path.insert(0, str(GRAFANA))
    try:
        import build_dashboards
    finally:
        sys.path.pop(0)
    for name, text in build_dashboards.render().items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, f"{name} is stale: run build_dashboards.py"


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for path in (GRAFANA / "dashboards").glob("*.json"):
        for p in json.loads(path.read_text())["panels"]:
            for t in p.get("targets", []):
                out.append((f"{path.name}: {p['title']} [{t['refId']}]", t["expr"]))
    return out


def recording_rules() -> list[tuple[str, str]]:
    groups = yaml.safe_load((PROM / "rules.yml").read_text())["groups"]
    return [(r["record"], r["expr"]) for g in groups for r in g["rules"] if "record" in r]


def test_every_panel_and_recording_rule_returns_data_from_a_real_prometheus(tmp_path, backend_factory):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: scripts/test.sh installs Debian's prometheus package"
    _, s = backend_factory("stable", model="base", text="stable answer")
    _, c = backend_factory("cand", model="ft", text="candidate answer", fail_every=4)  # fallbacks happen
    judge = FakeJudge("always_a", fail_first=3)  # judge failures, and position bias on every pair
    gw_port, worker_port, prom_port = free_port(), free_port(), free_port()
    with ThreadServer(judge.app) as judge_srv:
        cfg = {"listen": {"port": gw_port}, "workers": 1, "data_dir": str(tmp_path / "data"),
               "auth": {"admin_tokens": [{"name": "ops", "token": "adm", "role": "admin"}]},
               "versions": [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                            {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
               "aliases": [{"name": "bot", "stable": "v1"}],
               "judging": {"sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
                           "judge": {"base_url": f"{judge_srv.url}/v1", "model": "scripted"},
                           "worker": {"metrics_port": worker_port, "claim_idle_s": 1.0}},
               "controller": {"interval_s": 0.5, "policy": {
                   "stages": [{"name": "canary", "weight_pct": 50}, {"name": "full", "weight_pct": 100}],
                   # the candidate fails on purpose (fallbacks on the dashboard): keep the rollout live
                   "min_bake_s": 3600, "guards": {"error_rate": None}}}}
        config = tmp_path / "cg.yaml"
        config.write_text(yaml.safe_dump(cfg))
        rules = yaml.safe_load((PROM / "rules.yml").read_text())
        for g in rules["groups"]:
            g["interval"] = "1s"  # the same rules, evaluated often enough for a short test
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": "gateway", "static_configs": [{"targets": [f"127.0.0.1:{gw_port}"]}]},
                               {"job_name": "worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}]}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIFFGUARD_", "PROMETHEUS_"))}
        url = f"http://127.0.0.1:{gw_port}"
        gw = start(config, env)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            wait_up(url, gw)
            r = httpx.post(f"{url}/admin/aliases/bot/rollout", headers={"authorization": "Bearer adm"},
                           json={"candidate": "v2"})
            assert r.status_code == 200, r.text
            procs.append(subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
                                          env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                                           f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                           f"--web.listen-address=127.0.0.1:{prom_port}"],
                                          start_new_session=True, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 25
            i = 0
            with httpx.Client(base_url=url, timeout=10) as h:
                while time.monotonic() < deadline:  # traffic: plain and streamed, two categories, many users
                    h.post("/v1/chat/completions", headers={"x-cliffguard-category": ("writing", "math")[i % 2]},
                           json={"model": "bot", "user": f"u{i % 50}", "stream": i % 3 == 0,
                                 "messages": [{"role": "user", "content": f"question {i}"}]})
                    i += 1
                    time.sleep(0.02)
            prom = f"http://127.0.0.1:{prom_port}/api/v1/query"
            queries = [(n, q.replace("$alias", "bot").replace("$category", "writing"))
                       for n, q in panel_queries() + recording_rules()]
            empty: list[str] = []
            deadline = time.monotonic() + 30
            while True:  # scrapes and rule evaluations catch up within a few seconds
                empty = [f"{n}: {q}" for n, q in queries
                         if not httpx.get(prom, params={"query": q}, timeout=10).json()["data"]["result"]]
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(2)
            targets = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/targets").json()["data"]["activeTargets"]
            health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
            assert not empty, f"targets {health}; queries without data:\n" + "\n".join(empty)
            assert len(queries) >= 30
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            stop(gw)
