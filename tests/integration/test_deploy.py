"""The deploy files, checked with real tools: hadolint on the Dockerfile, the Compose file against the
Compose specification schema (the tests cannot run a Docker engine here), the Kustomize base and overlays
rendered by `kubectl kustomize`, the Helm chart linted and rendered by `helm` (its values checked against
values.schema.json), every built-in resource validated against the Kubernetes schemas, configs loadable."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.config import load_settings

REPO = Path(__file__).resolve().parents[2]
CACHE = Path.home() / ".cache" / "cliffguard"
SCHEMA = CACHE / "compose_spec.json"
CHART = REPO / "deploy/helm/cliffguard"
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


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
    for name in ("gateway-1", "gateway-2"):  # SIGTERM: streams in flight get the gateway's 30 s
        assert int(services[name]["stop_grace_period"].rstrip("s")) > 30
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




def tool(name: str) -> str:
    """A binary on PATH, else the one scripts/test.sh cached (helm, and kubectl where none is installed)."""
    exe = shutil.which(name) or (str(CACHE / "bin" / name) if (CACHE / "bin" / name).exists() else None)
    assert exe, f"{name} is missing: scripts/test.sh installs it"
    return exe


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def validate(docs: list[dict[str, Any]]) -> None:
    """Every built-in resource strictly against the Kubernetes 1.30 schemas; CRDs have none upstream."""
    for d in docs:
        if (d["apiVersion"], d["kind"]) in CRDS:
            assert d["spec"] and d["metadata"]["name"]
            continue
        kubernetes_validate.validate(d, "1.30", strict=True)


def by(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return c


def env_names(deployment: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container(deployment).get("env", [])}


def test_generated_copies_of_rules_and_dashboards_are_current():
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    for rel, text in generate.generated().items():
        assert (REPO / "deploy" / rel).read_text() == text, f"deploy/{rel} is stale: python deploy/generate.py"


def kustomize(layer: str) -> list[dict[str, Any]]:
    r = run(tool("kubectl"), "kustomize", str(REPO / "deploy/k8s" / layer))
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.mark.parametrize("layer", ["base", "overlays/production", "overlays/external-redis"])
def test_kustomize_renders_and_validates_against_the_kubernetes_schemas(layer):
    docs = kustomize(layer)
    validate(docs)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
            "ServiceMonitor", "PrometheusRule"} <= kinds
    # tokens come from the operator's Secret (docs/deploy.md): `kubectl apply -k` never overwrites it
    assert "Secret" not in kinds
    gateway = by(docs, "Deployment", "cliffguard-gateway")[0]
    c = container(gateway)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert refs["CLIFFGUARD_ADMIN_TOKEN"] == {"name": "cliffguard-tokens", "key": "admin-token"}
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30
    config = yaml.safe_load(by(docs, "ConfigMap", "cliffguard-config")[0]["data"]["cliffguard.yaml"])
    assert {"token_env": "CLIFFGUARD_ADMIN_TOKEN"}.items() <= config["auth"]["admin_tokens"][0].items()
    if layer == "overlays/production":
        assert gateway["spec"]["replicas"] == 4 and gateway["metadata"]["namespace"] == "cliffguard"
        assert c["image"] == "registry.example.com/cliffguard:0.1.0"
    if layer == "overlays/external-redis":
        assert not by(docs, "StatefulSet") and not by(docs, "Service", "cliffguard-redis")
        for d in by(docs, "Deployment"):  # every process reads the external Redis URL from the Secret
            assert "CLIFFGUARD_REDIS_URL" in env_names(d), d["metadata"]["name"]


def test_nothing_under_deploy_or_examples_ships_a_token():
    for path in [*(REPO / "deploy").rglob("*.y*ml"), *(REPO / "examples").rglob("*"), REPO / "README.md"]:
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"change-me|(?<![\w_])token: [\w-]{6,}", text), path


def helm_template(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    args = [tool("helm"), "template", "cg", str(CHART), "--namespace", "llm"]
    if values is not None:
        f = tmp_path / "values.yaml"
        f.write_text(yaml.safe_dump(values))
        args += ["-f", str(f)]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def test_helm_chart_lints_strictly():
    r = run(tool("helm"), "lint", "--strict", str(CHART))
    assert r.returncode == 0, r.stdout + r.stderr


def test_helm_chart_defaults_internal_redis_and_tokens_generated_once(tmp_path, monkeypatch):
    docs = helm_template(tmp_path)
    validate(docs)
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                         "ConfigMap", "Secret", "StatefulSet"}
    assert {d["metadata"]["name"] for d in by(docs, "Deployment")} == {
        "cg-cliffguard-gateway", "cg-cliffguard-worker", "cg-cliffguard-controller"}
    secret = by(docs, "Secret")[0]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # survives uninstall
    tokens = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(tokens) == {"admin-token", "read-token"} and all(len(t) >= 40 for t in tokens.values())
    again = by(helm_template(tmp_path), "Secret")[0]["data"]  # random per install: nothing is shipped
    assert again["admin-token"] != secret["data"]["admin-token"]
    gateway = by(docs, "Deployment", "gateway")[0]
    assert "replicas" not in gateway["spec"]  # the HPA owns it
    assert container(gateway)["image"] == "cliffguard:0.1.0"
    # the rendered config is one the gateway accepts, pointing at the chart's Redis
    cm = by(docs, "ConfigMap", "cliffguard-config")[0]["data"]["cliffguard.yaml"]
    (tmp_path / "cliffguard.yaml").write_text(cm)
    monkeypatch.setenv("CLIFFGUARD_ADMIN_TOKEN", tokens["admin-token"])
    s = load_settings(tmp_path / "cliffguard.yaml")
    assert s.redis_url == "redis://cg-cliffguard-redis:6379/0" and s.workers == 2 and not s.controller.enabled
    assert [a.name for a in s.aliases] == ["support-bot"] and s.listen.host == "0.0.0.0"
    controller = by(docs, "Deployment", "controller")[0]
    assert {"name": "CLIFFGUARD_CONTROLLER__ENABLED", "value": "true"} in container(controller)["env"]


def test_helm_chart_existing_secret_external_redis_and_monitoring(tmp_path):
    values = {
        "image": {"repository": "registry.example.com/cliffguard", "tag": "0.1.1"},
        "config": {"versions": [{"name": "base", "base_url": "http://vllm:8000/v1", "model": "base"},
                                {"name": "ft", "base_url": "http://vllm:8000/v1", "model": "lora"}],
                   "aliases": [{"name": "bot", "stable": "base", "candidate": "ft", "weight_pct": 0}],
                   "listen": {"port": 1}},  # the chart's own fields win
        "auth": {"existingSecret": "ops-tokens", "adminTokenKey": "admin"},
        "gateway": {"replicas": 4, "hpa": {"enabled": False}, "pdb": {"enabled": False}},
        "redis": {"internal": {"enabled": False}, "external": {"existingSecret": "redis-url"}},
        "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                       "dashboards": {"enabled": True}},
    }
    docs = helm_template(tmp_path, values)
    validate(docs)
    kinds = {d["kind"] for d in docs}
    assert "Secret" not in kinds and "StatefulSet" not in kinds  # the operator's Secret is used, never written
    assert not ({"HorizontalPodAutoscaler", "PodDisruptionBudget"} & kinds)
    gateway = by(docs, "Deployment", "gateway")[0]
    assert gateway["spec"]["replicas"] == 4
    assert container(gateway)["image"] == "registry.example.com/cliffguard:0.1.1"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(gateway)["env"]}
    assert refs["CLIFFGUARD_ADMIN_TOKEN"] == {"name": "ops-tokens", "key": "admin"}
    for d in by(docs, "Deployment"):
        assert "CLIFFGUARD_REDIS_URL" in env_names(d), d["metadata"]["name"]
    config = yaml.safe_load(by(docs, "ConfigMap", "config")[0]["data"]["cliffguard.yaml"])
    assert "redis_url" not in config and config["listen"]["port"] == 8080 and config["aliases"][0]["name"] == "bot"
    rule = by(docs, "PrometheusRule")[0]
    assert rule["spec"] == yaml.safe_load((REPO / "deploy/prometheus/rules.yml").read_text())
    dashboards = by(docs, "ConfigMap", "dashboards")[0]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["data"] == {p.name: p.read_text() for p in (REPO / "deploy/grafana/dashboards").glob("*.json")}
    monitor = by(docs, "ServiceMonitor")[0]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "metrics"}


@pytest.mark.parametrize(("values", "message"), [
    ({"gateway": {"replicas": "four"}}, "/gateway/replicas"),
    ({"gateway": {"replicaz": 4}}, "replicaz"),
    ({"gateway": {"terminationGracePeriodSeconds": 10}}, "/gateway/terminationGracePeriodSeconds"),
    ({"redis": {"internal": {"enabled": False}}}, "redis.external.existingSecret is required"),
])
def test_helm_chart_rejects_bad_values_with_a_message_naming_them(tmp_path, values, message):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(values))
    r = run(tool("helm"), "template", "cg", str(CHART), "-f", str(f))
    assert r.returncode != 0 and message in r.stderr, r.stderr
