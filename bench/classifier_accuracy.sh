#!/usr/bin/env bash
# Accuracy, per-category precision/recall, confusion and calibration of the shipped classifier on every
# labelled set in bench/data/classifier_*.jsonl (our set, the dev set, and any held-out set dropped
# there), separately for single prompts and conversations.
#   bench/classifier_accuracy.sh [--json]      # --json: one JSON object per file, on one line each
set -euo pipefail
cd "$(dirname "$0")/.."
CLIFFGUARD=${CLIFFGUARD:-.venv/bin/cliffguard}
shopt -s nullglob
files=(bench/data/classifier_*.jsonl)
[ ${#files[@]} -gt 0 ] || { echo "no bench/data/classifier_*.jsonl" >&2; exit 1; }
for f in "${files[@]}"; do
  if [ "${1:-}" = "--json" ]; then
    printf '{"file": "%s", "report": %s}\n' "$f" "$("$CLIFFGUARD" classifier eval "$f" --json)"
  else
    echo "== $f"
    COLUMNS=${COLUMNS:-160} "$CLIFFGUARD" classifier eval "$f"
  fi
done
