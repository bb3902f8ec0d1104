#!/usr/bin/env bash
# Installs cliffguard into .venv and runs the gateway on the embedded default (no other service needed):
#   ./scripts/serve.sh [--config FILE]     (default: examples/cliffguard.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0  # CPU wheel, before anything pulls CUDA
.venv/bin/pip install -q --disable-pip-version-check -e .
[ $# -eq 0 ] && set -- --config examples/cliffguard.yaml
exec .venv/bin/cliffguard serve "$@"
