#!/usr/bin/env bash
# Classifier speed, this tree against another git revision (default: main), run alternately so both
# see the same machine load: bench/classifier_bench.py in each, ROUNDS times, SECONDS each.
#   bench/classifier_ab.sh [REV] [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-main}; rounds=${2:-3}; secs=${3:-10}
py=$PWD/.venv/bin/python
other=$(mktemp -d)
trap 'rm -rf "$other"' EXIT
git archive "$rev" router bench | tar -x -C "$other"
for r in $(seq "$rounds"); do
  echo "round $r, load average $(cut -d' ' -f1 /proc/loadavg)"
  (cd "$other" && PYTHONPATH="$other" "$py" bench/classifier_bench.py --seconds "$secs" 2>&1 | sed "s/^/  $rev: /")
  "$py" bench/classifier_bench.py --seconds "$secs" 2>&1 | sed 's/^/  this tree: /'
done
