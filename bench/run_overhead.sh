#!/usr/bin/env bash
# Proxy-overhead comparison: direct, nginx, LiteLLM (default and tuned) and cliffguard against the same
# fast upstream, interleaved, using the shared harness (../shared/bench). Writes its results folder
# (/tmp/bench-run/<timestamp>/) and prints the table; docs/benchmarks.md quotes a run.
#   bench/run_overhead.sh [--realistic] [--rounds N] [extra run_compare.sh args]
# --realistic: 20,000 distinct prompts from 5,000 users for every target (the embedding classifier labels
# every request, users spread over both arms), cliffguard with bench/cliffguard-realistic.yaml (a live
# 20% split analysed by the controller, 5% sampling). Without it: one fixed prompt that a rule labels.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
config=$repo/bench/cliffguard-bench.yaml
if [ "${1:-}" = "--realistic" ]; then
  shift
  config=$repo/bench/cliffguard-realistic.yaml
  prompts=/tmp/cliffguard-bench-prompts.jsonl
  [ -s "$prompts" ] || python3 "${BENCH_HARNESS:-$repo/../shared/bench}/make_prompts.py" -n 20000 > "$prompts"
  export LOAD_ARGS="--prompts $prompts --users 5000 ${LOAD_ARGS:-}"
fi
harness=${BENCH_HARNESS:-$repo/../shared/bench}
venvs=${BENCH_VENVS:-/tmp/bench-venvs}
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light; }
[ -x "$venvs/bench/bin/python" ] || { python3 -m venv "$venvs/bench"; "$venvs/bench/bin/pip" install -q uvloop httptools orjson; }
[ -x "$venvs/litellm/bin/litellm" ] || { python3 -m venv "$venvs/litellm"; "$venvs/litellm/bin/pip" install -q 'litellm[proxy]'; }
[ -x "$repo/.venv/bin/cliffguard" ] || { python3 -m venv "$repo/.venv"; "$repo/.venv/bin/pip" install -q -e "$repo"; }
rm -rf /tmp/cliffguard-bench /tmp/cliffguard-bench-realistic  # fresh embedded Redis state for the bench configs
cd "$harness"
BENCH_PY="$venvs/bench/bin/python" LITELLM_VENV="$venvs/litellm" ./run_compare.sh \
  --extra cliffguard=http://127.0.0.1:9000 --model cliffguard=fake-model \
  --start cliffguard="$repo/.venv/bin/cliffguard serve --config $config --log-level warning" \
  "$@"
