#!/usr/bin/env bash
# Installs cliffguard (and the official `openai` client, for trying it) into .venv and runs the gateway
# on the embedded default (no other service needed):
#   ./scripts/serve.sh [--config FILE]     (default: examples/cliffguard.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv || { echo "python3 -m venv failed: on Debian/Ubuntu, apt install python3-venv" >&2; exit 1; }
fi
echo ">> installing cliffguard into .venv (the first time takes a few minutes)" >&2
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0  # CPU wheel, before anything pulls CUDA
.venv/bin/pip install -q --disable-pip-version-check -e . openai
[ $# -eq 0 ] && set -- --config examples/cliffguard.yaml
exec .venv/bin/cliffguard serve "$@"
