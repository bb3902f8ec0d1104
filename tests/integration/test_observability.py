"""Prometheus rules and Grafana dashboards against real tools: promtool, and a real Prometheus server
scraping a running gateway (with the controller) and a judge worker that have served and judged traffic.
Every dashboard panel's query and every recording rule must return data: no silently empty panel. With a
worker of `serve` killed, every health gauge and alert expression must stay true."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from tests.support.fake_judge import FakeJudge
from tests.support.metrics import sample
from tests.support.serve import per_process, running, start, stop, wait_up
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


def start_prometheus(tmp_path: Path, targets: dict[str, int], port: int) -> subprocess.Popen[bytes]:
    """A real Prometheus with the shipped rules, evaluated every second (the same rules, a short test)."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: scripts/test.sh installs Debian's prometheus package"
    rules = yaml.safe_load((PROM / "rules.yml").read_text())
    for g in rules["groups"]:
        g["interval"] = "1s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
                           for job, p in targets.items()]}))
    return subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    _, s = backend_factory("stable", model="base", text="stable answer")
    _, c = backend_factory("cand", model="ft", text="candidate answer", fail_every=4)  # fallbacks happen
    judge = FakeJudge("always_a", fail_first=3)  # judge failures, and position bias on every pair
    gw_port, worker_port, prom_port = free_port(), free_port(), free_port()
    with ThreadServer(judge.app) as judge_srv:
        cfg = {"listen": {"port": gw_port}, "workers": 1, "data_dir": str(tmp_path / "data"),
               "auth": {"admin_tokens": [{"name": "ops", "token": "adm", "role": "admin"}]},
               "versions": [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                            {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
               "aliases": [{"name": "bot", "stable": "v1"}], "feedback": {"enabled": True},
               "judging": {"sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
                           "judge": {"base_url": f"{judge_srv.url}/v1", "model": "scripted"},
                           "worker": {"metrics_port": worker_port, "claim_idle_s": 1.0}},
               "controller": {"interval_s": 0.5, "policy": {
                   "stages": [{"name": "canary", "weight_pct": 50}, {"name": "full", "weight_pct": 100}],
                   # the candidate fails on purpose (fallbacks on the dashboard): keep the rollout live
                   "min_bake_s": 3600, "guards": {"error_rate": None}}}}
        config = tmp_path / "cg.yaml"
        config.write_text(yaml.safe_dump(cfg))
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
            procs.append(start_prometheus(tmp_path, {"gateway": gw_port, "worker": worker_port}, prom_port))
            deadline = time.monotonic() + 25
            i = 0
            with httpx.Client(base_url=url, timeout=10) as h:
                while time.monotonic() < deadline:  # traffic: plain and streamed, two categories, many users
                    r = h.post("/v1/chat/completions",
                               headers={"x-cliffguard-category": ("writing", "math")[i % 2]},
                               json={"model": "bot", "user": f"u{i // 2 % 50}", "stream": i % 3 == 0,
                                     "messages": [{"role": "user", "content": f"question {i // 2}"}]})
                    if i % 4 == 1:  # users rate some answers (the feedback row); `question {i // 2}`
                        h.post("/v1/feedback", json={"request_id": r.headers["x-request-id"],  # is asked twice:
                                                     "score": ("up", "down")[i % 8 == 1]})  # regenerations
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




def wait_for(check, what, timeout: float = 30):  # type: ignore[no-untyped-def]
    """Poll `check` until it is truthy; `what` (a string, or a function giving one) says what failed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"timed out waiting for {what() if callable(what) else what}"
            return result
        time.sleep(0.2)


def test_health_gauges_and_alerts_stay_true_when_a_worker_is_killed(tmp_path, backend_factory):
    """Two workers; the one leading the controller, with streams in flight, is killed with SIGKILL. The
    supervisor replaces it and forgets its live gauges: in-flight counts only the live streams, one
    process leads, Redis is up, the revision is current, and no shipped alert fires or is pending."""
    words = " ".join(f"w{i}" for i in range(50))
    _, slow = backend_factory("slow", model="base", text=words, chunks=50, chunk_delay_s=0.4)  # 20 s streams
    gw_port, prom_port = free_port(), free_port()
    data = tmp_path / "data"
    cfg = {"listen": {"port": gw_port}, "workers": 2, "data_dir": str(data),
           "auth": {"admin_tokens": [{"name": "ops", "token": "adm", "role": "admin"}]},
           "versions": [{"name": "v1", "base_url": f"{slow.url}/v1", "model": "base"}],
           "aliases": [{"name": "bot", "stable": "v1"}],
           "controller": {"interval_s": 0.5, "lease_s": 2}}
    config = tmp_path / "cg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIFFGUARD_", "PROMETHEUS_"))}
    url = f"http://127.0.0.1:{gw_port}"
    prom_dir = data / "prometheus" / str(gw_port)
    gw = start(config, env)
    prom = None
    streams: list[dict[str, object]] = []
    try:
        wait_up(url, gw)
        prom = start_prometheus(tmp_path, {"gateway": gw_port}, prom_port)
        leader = wait_for(lambda: next((p for p, v in per_process(prom_dir, "cliffguard_controller_leader").items()
                                        if v == 1), None), "a controller leader")

        def consume(record: dict[str, object]) -> None:
            try:
                with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                                  json={"model": "bot", "stream": True, "messages": []}) as r:
                    record["body"] = "".join(r.iter_text())
            except httpx.HTTPError as e:
                record["error"] = repr(e)

        def in_flight() -> dict[int, float]:
            return per_process(prom_dir, "cliffguard_in_flight_requests")

        while len(streams) < 24 and not (in_flight().get(leader, 0) >= 1 and sum(in_flight().values()) >
                                         in_flight().get(leader, 0)):
            rec: dict[str, object] = {}
            rec["thread"] = threading.Thread(target=consume, args=(rec,), daemon=True)
            rec["thread"].start()  # type: ignore[attr-defined]
            streams.append(rec)
            n = len(streams)
            wait_for(lambda n=n: sum(in_flight().values()) == n, f"{n} streams in flight")
        on_leader = in_flight()[leader]
        assert on_leader >= 1 and len(streams) - on_leader >= 1, "streams on both workers"
        revision = httpx.get(f"{url}/readyz", headers={"authorization": "Bearer adm"}, timeout=10).json()[
            "state_revision"]  # details need a token

        os.kill(int(leader), signal.SIGKILL)
        wait_for(lambda: leader not in per_process(prom_dir, "cliffguard_in_flight_requests")
                 and leader not in per_process(prom_dir, "cliffguard_controller_leader"), "the dead worker forgotten")
        survivors = len(streams) - on_leader
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert sample(text, "cliffguard_in_flight_requests") == survivors  # not stuck with the dead one's

        q = f"http://127.0.0.1:{prom_port}/api/v1/query"

        def value(expr: str) -> float | None:
            res = httpx.get(q, params={"query": expr}, timeout=10).json()["data"]["result"]
            return float(res[0]["value"][1]) if res else None

        health = {  # over the whole server, as Prometheus sees it after the kill
            "sum(cliffguard_controller_leader)": 1.0,  # re-elected once the lease expired; the dead one is gone
            "min(cliffguard_redis_up)": 1.0,
            "min(cliffguard_state_revision)": float(revision),
            "sum(cliffguard_in_flight_requests)": float(survivors),
            "max(cliffguard_candidate_weight_ratio)": 0.0,
        }
        wait_for(lambda: all(value(e) == v for e, v in health.items()),
                 lambda: f"health gauges {health}, got {({e: value(e) for e in health})}")
        live_files = {int(f.stem.rsplit("_", 1)[1]) for f in prom_dir.glob("gauge_live*_*.db")}
        assert live_files and all(running(pid) for pid in live_files)

        alerts = [(r["alert"], r["expr"]) for g in yaml.safe_load((PROM / "rules.yml").read_text())["groups"]
                  for r in g["rules"] if "alert" in r]

        def true_alerts() -> list[str]:
            return [a for a, e in alerts if httpx.get(q, params={"query": e}, timeout=10).json()["data"]["result"]]

        wait_for(lambda: not true_alerts(), lambda: f"alert expressions true on a healthy server: {true_alerts()}",
                 timeout=15)
        assert not httpx.get(q, params={"query": "ALERTS"}, timeout=10).json()["data"]["result"]  # nor pending

        for rec in streams:  # the survivors' streams finish whole; the dead worker's broke off
            rec["thread"].join(timeout=30)  # type: ignore[attr-defined]
        whole = [r for r in streams if "error" not in r and "[DONE]" in str(r.get("body"))]
        assert len(whole) == survivors
        wait_for(lambda: value("sum(cliffguard_in_flight_requests)") == 0, "in-flight back to 0")
    finally:
        if prom is not None:
            os.killpg(prom.pid, signal.SIGTERM)
            prom.wait(timeout=20)
        stop(gw)
