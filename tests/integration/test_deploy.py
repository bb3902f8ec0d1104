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


def _k8s():
    sys.path.insert(0, str(REPO / "deploy" / "k8s"))
    try:
        import render
    finally:
        sys.path.pop(0)
    return render


def test_k8s_generated_files_are_current():
    render = _k8s()
    for name, text in render.generated().items():
        assert (REPO / "deploy/k8s/base" / name).read_text() == text, f"{name} is stale: render.py generate"


def test_k8s_base_and_overlays_render_and_validate_against_the_kubernetes_schemas():
    import kubernetes_validate

    render = _k8s()
    crds = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
    for layer in ("base", "overlays/production", "overlays/external-redis"):
        docs = render.render(REPO / "deploy/k8s" / layer)
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret",
                "ServiceMonitor", "PrometheusRule"} <= kinds, layer
        for d in docs:
            if (d["apiVersion"], d["kind"]) in crds:  # Prometheus Operator CRDs: no upstream schema
                assert d["spec"] and d["metadata"]["name"]
                continue
            kubernetes_validate.validate(d, "1.30", strict=True)
        gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cliffguard-gateway")
        c = gateway["spec"]["template"]["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    prod = render.render(REPO / "deploy/k8s/overlays/production")
    gw = next(d for d in prod if d["metadata"]["name"] == "cliffguard-gateway" and d["kind"] == "Deployment")
    assert gw["spec"]["replicas"] == 4 and gw["metadata"]["namespace"] == "cliffguard"
    assert gw["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/cliffguard:0.1.0"
    ext = render.render(REPO / "deploy/k8s/overlays/external-redis")
    assert not any(d["kind"] == "StatefulSet" for d in ext)
    for d in ext:  # every process reads the external Redis URL from the Secret
        if d["kind"] == "Deployment":
            env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            assert any(e["name"] == "CLIFFGUARD_REDIS_URL" for e in env), d["metadata"]["name"]
