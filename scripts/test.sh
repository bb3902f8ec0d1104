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
