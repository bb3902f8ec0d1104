#!/usr/bin/env bash
# What answering with the alias costs on the hot path (docs/benchmarks.md, "Protocol compatibility").
# Runs the shared harness (../shared/bench) against its fake upstream with cliffguard twice, interleaved:
#   same-name  this code; the alias is the backend's model name (`fake-model`), so nothing is rewritten
#   renamed    this code; alias `fake-model` served as `fake-served`: every JSON answer and every stream
#              chunk has its `"model"` rewritten
# and, when BASELINE names a `cliffguard` executable of the code before (e.g. a venv of main), that one too
# (`baseline`, same config as same-name). Each uses bench/cliffguard-bench.yaml on its own port and data dir.
#   bench/protocol_overhead.sh [--rounds N] [extra run_compare.sh args]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
harness=${BENCH_HARNESS:-$repo/../shared/bench}
venvs=${BENCH_VENVS:-/tmp/bench-venvs}
[ -x "$venvs/bench/bin/python" ] || { python3 -m venv "$venvs/bench"; "$venvs/bench/bin/pip" install -q uvloop httptools orjson; }
[ -x "$repo/.venv/bin/cliffguard" ] || { python3 -m venv "$repo/.venv"; "$repo/.venv/bin/pip" install -q -e "$repo"; }
cfgs=$(mktemp -d)
config() {  # config NAME PORT SERVED_MODEL
  sed -e "s/port: 9000/port: $2/" -e "s#data_dir: /tmp/cliffguard-bench#data_dir: /tmp/cliffguard-bench-$1#" \
      -e "s/^    model: fake-model$/    model: $3/" "$here/cliffguard-bench.yaml" > "$cfgs/$1.yaml"
  rm -rf "/tmp/cliffguard-bench-$1"
  echo "$cfgs/$1.yaml"
}
serve="serve --log-level warning --config"
targets=(--extra same-name=http://127.0.0.1:9001 --start same-name="$repo/.venv/bin/cliffguard $serve $(config same-name 9001 fake-model)"
         --extra renamed=http://127.0.0.1:9002 --start renamed="$repo/.venv/bin/cliffguard $serve $(config renamed 9002 fake-served)")
if [ -n "${BASELINE:-}" ]; then
  targets+=(--extra baseline=http://127.0.0.1:9003 --start baseline="$BASELINE $serve $(config baseline 9003 fake-model)")
fi
cd "$harness"
BENCH_PY="$venvs/bench/bin/python" ./run_compare.sh --targets direct "${targets[@]}" "$@"
rm -rf "$cfgs"
