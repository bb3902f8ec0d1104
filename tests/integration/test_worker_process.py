"""`cliffguard serve` + `cliffguard worker` as operators run them, on the embedded Redis: workers find it,
judge, export metrics (two on one host share a config, so the second takes the next metrics port), and a
worker killed mid-way loses nothing: the other takes its samples over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import yaml

from tests.support.fake_judge import FakeJudge
from tests.support.metrics import sample
from tests.support.serve import start, stop, wait_up
from tests.support.servers import ThreadServer, free_port


def test_two_workers_on_one_host_and_one_killed_lose_nothing(tmp_path, backend_factory):
    _, s = backend_factory("stable", model="base", text="stable answer")
    _, c = backend_factory("cand", model="ft", text="candidate answer is best", head_delay_s=0.2)
    judge = FakeJudge("prefer:candidate")
    metrics_port, port = free_port(), free_port()
    with ThreadServer(judge.app) as judge_srv:
        cfg = {"listen": {"port": port}, "workers": 1, "data_dir": str(tmp_path / "data"),
               "versions": [{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                            {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
               "aliases": [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 0}],
               "judging": {"sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
                           "judge": {"base_url": f"{judge_srv.url}/v1", "model": "scripted"},
                           "worker": {"metrics_port": metrics_port, "claim_idle_s": 60, "dead_after_s": 2,
                                      "concurrency": 2}}}
        path = tmp_path / "cg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIFFGUARD_", "PROMETHEUS_"))}
        url = f"http://127.0.0.1:{port}"
        gw = start(path, env)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            wait_up(url, gw)
            for i in range(30):
                httpx.post(f"{url}/v1/chat/completions", headers={"x-cliffguard-category": "writing"},
                           json={"model": "bot", "messages": [{"role": "user", "content": f"poem {i}"}]})
            cmd = [sys.executable, "-m", "gateway.cli", "worker", "--config", str(path)]
            for _ in range(2):  # the same config, so the same metrics port, on one host
                workers.append(subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 30
            while len(judge.calls) < 6 or not all(_serves_metrics(p) for p in (metrics_port, metrics_port + 1)):
                assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
                time.sleep(0.05)
            os.killpg(workers[0].pid, signal.SIGKILL)  # dies with messages in flight
            workers[0].wait()
            export_cmd = [sys.executable, "-m", "gateway.cli", "judgments", "export", "--alias", "bot",
                          "--config", str(path)]
            deadline = time.monotonic() + 60
            while True:  # the stored pairs are the ground truth: every sample judged exactly once
                pairs = subprocess.run(export_cmd, env=env, capture_output=True, text=True).stdout.splitlines()
                if len(pairs) >= 30:
                    break
                assert time.monotonic() < deadline, f"{len(pairs)} of 30 judged"
                time.sleep(0.5)
            assert len(pairs) == 30 and len({p.split('"request_id":"')[1][:24] for p in pairs}) == 30
            assert workers[1].poll() is None
            survivor = next(p for p in (metrics_port, metrics_port + 1) if _serves_metrics(p))
            text = httpx.get(f"http://127.0.0.1:{survivor}/metrics", timeout=5).text
            assert sample(text, "cliffguard_judged_pairs_total", alias="bot", category="writing", outcome="win") > 0
            assert "cliffguard_judge_queue_length" in text and "cliffguard_judge_latency_seconds" in text
        finally:
            for w in workers:
                if w.poll() is None:
                    os.killpg(w.pid, signal.SIGINT)
                    w.wait(timeout=15)
            stop(gw)
        logs = b"".join(w.stdout.read() for w in workers if w.stdout).decode()
        assert f"metrics port {metrics_port} is in use" in logs  # said, not crashed on
        assert "judge unreachable" not in logs  # the judge was up: no false alarm


def _serves_metrics(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def test_worker_says_loudly_when_its_judge_cannot_be_reached():
    """Without a judge nothing is judged and rollouts end inconclusive: the worker must say so."""
    from gateway.processes.worker import judge_unreachable

    judge = FakeJudge("prefer:candidate")
    with ThreadServer(judge.app) as srv:
        assert await judge_unreachable(f"{srv.url}/v1") is None
    why = await judge_unreachable(f"http://127.0.0.1:{free_port()}/v1")
    assert why is not None and "Connect" in why
