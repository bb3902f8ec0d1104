#!/usr/bin/env bash
# Evidence for the rollout statistics (docs/benchmarks.md): the policy simulator with the real statistics
# and decision, 2,000 rollouts per case, 8 categories, tie rate 0.4, tolerance 0.02, alpha 0.05, a look
# every 10 pairs, up to 10,000 pairs per category, the default stages and gates.
#   bench/rollback_evidence.sh [OUT_DIR]    (JSON reports land in OUT_DIR, default /tmp/rollback-evidence)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/rollback-evidence}; mkdir -p "$out"
cg=".venv/bin/cliffguard simulate --json --runs 2000 --categories 8 --tie-rate 0.4 --alpha 0.05 --tolerance 0.02 \
--check-every 10 --max-pairs 10000"
step() { printf '\033[1;34m>> %s\033[0m\n' "$*" >&2; }
for method in sequential threshold mannwhitney; do
  step "no effect, $method"; $cg --method $method --seed 11 > "$out/null-$method.json"
  step "reasoning -0.10, $method"; $cg --method $method --seed 12 --effects reasoning=-0.10 > "$out/effect-$method.json"
done
step "reasoning -0.05, sequential"; $cg --seed 13 --effects reasoning=-0.05 > "$out/small-sequential.json"
.venv/bin/python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def load(n): return json.load(open(f"{out}/{n}.json"))
def f(v): return "never" if v is None else f"{v:,.0f}"
print("| method | no effect: falsely rolled back | no effect: reached 100% within 10,000 pairs | pairs to reach 100% (median / p95) | pairs to complete (median / p95) | D=-0.10 in reasoning: rolled back | median / p95 pairs | rolled back at weight <= 5% |")
print("|---|---|---|---|---|---|---|---|")
for m in ("sequential", "threshold", "mannwhitney"):
    n, e = load(f"null-{m}"), load(f"effect-{m}")
    r = e["categories"]["reasoning"]
    w = e["weight_pct_at_rollback"]["runs"]
    low = sum(c for k, c in w.items() if float(k) <= 5) / max(sum(w.values()), 1)
    print(f"| {m} | {n['rollback_rate']:.2%} | {n['reached_last_stage_rate']:.2%} "
          f"| {f(n['median_pairs_to_reach_last_stage'])} / {f(n['p95_pairs_to_reach_last_stage'])} "
          f"| {f(n['median_pairs_to_complete'])} / {f(n['p95_pairs_to_complete'])} "
          f"| {r['rollback_rate']:.2%} by reasoning ({e['rollback_rate']:.2%} in all) "
          f"| {f(r['median_pairs_to_rollback'])} / {f(r['p95_pairs_to_rollback'])} | {low:.2%} |")
s = load("small-sequential")
print(f"\nD=-0.05 in reasoning (sequential): rolled back {s['rollback_rate']:.2%} (median "
      f"{f(s['median_pairs_to_rollback'])} pairs), completed {s['promotion_rate']:.2%}, still undecided at 10,000 "
      f"pairs {s['undecided_rate']:.2%}; outcome by stage: {json.dumps(s['outcome_by_stage'])}")
n = load("null-sequential")
print(f"\nno effect (sequential): median pairs per category when each stage was passed: "
      f"{n['median_pairs_per_category_at_stage']}")
PY
