#!/usr/bin/env bash
# Evidence for the rollout statistics (docs/benchmarks.md): the policy simulator, 2,000 rollouts per case,
# 8 categories, alpha 0.05, a look every 10 pairs, for the sequential test and the naive checks.
#   bench/rollback_evidence.sh [OUT_DIR]    (JSON reports land in OUT_DIR, default /tmp/rollback-evidence)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/rollback-evidence}; mkdir -p "$out"
cg=".venv/bin/cliffguard simulate --json --runs 2000 --categories 8 --alpha 0.05 --tolerance 0.02 --check-every 10"
for method in sequential threshold mannwhitney; do
  $cg --method $method --seed 11 > "$out/null-$method.json"
  $cg --method $method --seed 12 --effects reasoning=-0.10 > "$out/effect-$method.json"
done
# promotion with no effect: stages need the lower bounds above -0.02, which takes many pairs
$cg --seed 13 --max-pairs 40000 --check-every 100 > "$out/promote-sequential.json"
.venv/bin/python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def load(n): return json.load(open(f"{out}/{n}.json"))
print("| method | no effect: falsely rolled back | D=-0.10 in reasoning: rolled back within 3,000 pairs | median pairs | p95 pairs |")
print("|---|---|---|---|---|")
for m in ("sequential", "threshold", "mannwhitney"):
    n, e = load(f"null-{m}"), load(f"effect-{m}")
    r = e["categories"]["reasoning"]
    print(f"| {m} | {n['rollback_rate']:.2%} | {r['rollback_rate']:.2%} (any category: {e['rollback_rate']:.2%}) "
          f"| {r['median_pairs_to_rollback']} | {r['p95_pairs_to_rollback']} |")
p = load("promote-sequential")
print(f"\nno effect, sequential, up to 40,000 pairs per category: promoted {p['promotion_rate']:.2%}, "
      f"falsely rolled back {p['rollback_rate']:.2%}, median pairs per category to pass each stage: "
      f"{p['median_pairs_per_category_at_stage']}")
PY
