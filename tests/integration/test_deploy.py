"""The deploy files, checked with real tools: hadolint on the Dockerfile, the Compose file against the
Compose specification schema (the tests cannot run a Docker engine here), configs loadable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from gateway.config import load_settings

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path.home() / ".cache" / "cliffguard" / "compose_spec.json"


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    r = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text


def test_compose_file_is_valid_against_the_compose_spec():
    assert SCHEMA.exists(), "scripts/test.sh extracts the Compose spec schema into ~/.cache/cliffguard"
    compose = yaml.safe_load((REPO / "deploy/compose/docker-compose.yml").read_text())
    jsonschema.validate(compose, json.loads(SCHEMA.read_text()))
    services = compose["services"]
    assert {"gateway-1", "gateway-2", "lb", "worker", "controller", "redis", "prometheus", "grafana"} <= set(services)
    assert {"vllm", "vllm-candidate", "vllm-cpu", "vllm-judge"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]  # persistence: queued samples survive restarts
    for svc in services.values():  # every file a service mounts exists in the repo
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")) and "${" not in src:
                assert (REPO / "deploy/compose" / src).resolve().exists(), src


def test_compose_gateway_config_and_prometheus_targets(monkeypatch):
    monkeypatch.setenv("CLIFFGUARD_ADMIN_TOKEN", "x")
    s = load_settings(REPO / "deploy/compose/cliffguard.yaml")
    assert s.redis_url == "redis://redis:6379/0" and s.judging.worker.metrics_port == 9108
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"gateway-1:8080", "gateway-2:8080", "worker:9108", "controller:9109"}
