"""Generates the Grafana dashboards (deploy/grafana/dashboards/*.json) from code, so panels and metric
names stay in step: `python deploy/grafana/build_dashboards.py` (CI checks the committed JSON is current,
and runs every panel's query against a real Prometheus fed by a running gateway, worker and controller).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
A = 'alias="$alias"'


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


class Layout:
    def __init__(self) -> None:
        self.y = 0
        self.x = 0
        self.next_id = 1
        self.panels: list[dict[str, Any]] = []

    def row(self, title: str, repeat: str | None = None) -> None:
        self.y += 1 if self.x == 0 else 8
        self.x = 0
        panel: dict[str, Any] = {"type": "row", "title": title, "id": self.next_id, "collapsed": False,
                                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []}
        if repeat:
            panel["repeat"] = repeat
        self.next_id += 1
        self.panels.append(panel)
        self.y += 1

    def add(self, kind: str, title: str, targets: list[dict[str, Any]], w: int = 8, h: int = 8, unit: str = "short",
            extra: dict[str, Any] | None = None) -> None:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + h
        self.panels.append({
            "type": kind, "title": title, "id": self.next_id, "datasource": DS, "targets": targets,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {}, **(extra or {})})
        self.next_id += 1
        self.x += w


def rollout_dashboard() -> dict[str, Any]:
    L = Layout()
    L.row("Rollout")
    L.add("stat", "Phase", [target(f"cliffguard_rollout_phase{{{A}}} == 1", "{{phase}}")], w=6, h=4,
          extra={"options": {"textMode": "name", "colorMode": "background"}})
    L.add("stat", "Stage", [target(f"cliffguard_rollout_stage{{{A}}}")], w=6, h=4)
    L.add("stat", "Candidate weight", [target(f"cliffguard_rollout_weight_ratio{{{A}}}")], w=6, h=4,
          unit="percentunit")
    L.add("stat", "Categories pinned to stable", [target(f"cliffguard_rollout_pinned_categories{{{A}}}")], w=6, h=4)
    L.add("stat", "Estimated time to the next gate (-1: not on track)", [
        target(f"cliffguard_rollout_eta_seconds{{{A}}}")], w=6, h=4, unit="s")
    L.add("timeseries", "Rollout transitions (controller and operators)", [
        target(f"sum by (transition, by) (increase(cliffguard_rollout_transitions_total{{{A}}}[5m]))",
               "{{transition}} by {{by}}")], w=9, h=4)
    L.add("timeseries", "Guards: candidate lower bound minus limit (above 0: tripped)", [
        target(f"cliffguard_rollout_guard_margin{{{A}}}", "{{guard}}")], w=9, h=4)

    L.row("Regression: $category", repeat="category")
    C = f'{A},category="$category"'
    band = {"fieldConfig": {"defaults": {"unit": "short", "min": -1, "max": 1, "custom": {"fillOpacity": 0}},
                            "overrides": [
                                {"matcher": {"id": "byName", "options": "upper bound"},
                                 "properties": [{"id": "custom.fillBelowTo", "value": "lower bound"},
                                                {"id": "custom.fillOpacity", "value": 25}]},
                                {"matcher": {"id": "byName", "options": "minus tolerance"},
                                 "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                                                {"id": "custom.lineStyle",
                                                 "value": {"fill": "dash", "dash": [10, 10]}}]},
                                {"matcher": {"id": "byName", "options": "next gate"},
                                 "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}},
                                                {"id": "custom.lineStyle",
                                                 "value": {"fill": "dash", "dash": [4, 4]}}]}]}}
    L.add("timeseries", "Candidate minus stable (P(win) - P(loss)) with its anytime-valid band, $category", [
        target(f"cliffguard_category_estimate{{{C}}}", "estimate", "A"),
        target(f"cliffguard_category_lower_bound{{{C}}}", "lower bound", "B"),
        target(f"cliffguard_category_upper_bound{{{C}}}", "upper bound", "C"),
        target(f"-cliffguard_category_tolerance{{{C}}}", "minus tolerance", "D"),
        target(f"-cliffguard_category_gate_margin{{{C}}}", "next gate", "E"),
    ], w=16, extra=band)
    L.add("timeseries", "Test statistic vs threshold, $category", [
        target(f"cliffguard_category_test_statistic{{{C}}}", "log e-value", "A"),
        target(f"cliffguard_category_test_threshold{{{C}}}", "rollback threshold", "B")], w=8)

    L.row("Evidence")
    L.add("timeseries", "Judged pairs per category (this rollout)", [
        target(f"cliffguard_category_judged_pairs{{{A}}}", "{{category}}")])
    L.add("timeseries", "Pairs still needed for the next gate (-1: met, or not on track)", [
        target(f"cliffguard_category_pairs_needed{{{A}}}", "{{category}}")])
    L.add("timeseries", "Requests the candidate served, per category (exposure)", [
        target(f"cliffguard_category_candidate_requests{{{A}}}", "{{category}}")])
    L.add("timeseries", "Judged pairs per second by outcome", [
        target(f"sum by (outcome) (cliffguard:judged_pairs:rate5m{{{A}}})", "{{outcome}}")], unit="reqps")

    L.row("Traffic")
    L.add("timeseries", "Requests by version", [
        target(f"sum by (version) (cliffguard:requests:rate5m{{{A}}})", "{{version}}")], unit="reqps")
    L.add("timeseries", "Requests by category", [
        target(f"sum by (category) (cliffguard:requests:rate5m{{{A}}})", "{{category}}")], unit="reqps")
    L.add("timeseries", "Error rate by version", [
        target(f"cliffguard:error_ratio:rate5m{{{A}}}", "{{version}}")], unit="percentunit")
    L.add("timeseries", "Latency p95 by version", [
        target(f"cliffguard:latency_seconds:p95_5m{{{A}}}", "{{version}}")], unit="s")
    L.add("timeseries", "TTFT p95 by version", [
        target(f"cliffguard:ttft_seconds:p95_5m{{{A}}}", "{{version}}")], unit="s")
    L.add("timeseries", "Completion tokens per second by version", [
        target(f"cliffguard:completion_tokens:rate5m{{{A}}}", "{{version}}")])
    L.add("timeseries", "Fallbacks to stable", [
        target(f"sum by (from_version, reason) (rate(cliffguard_fallbacks_total{{{A}}}[5m]))",
               "{{from_version}} {{reason}}")], unit="reqps")
    L.add("timeseries", "Gateway overhead p99", [
        target(f"histogram_quantile(0.99, sum by (le) (rate(cliffguard_gateway_overhead_seconds_bucket{{{A}}}[5m])))",
               "p99")], unit="s")

    L.row("Classifier health")
    L.add("timeseries", "Category mix by arm (share of requests, 30m)", [
        target(f"cliffguard:category_share:ratio30m{{{A}}}", "{{arm}}: {{category}}")], unit="percentunit")
    L.add("timeseries", "Category mix drift, candidate vs stable (total variation; alert above 0.15)", [
        target(f"cliffguard:category_mix_drift:tvd30m{{{A}}}", "distance")], unit="short",
        extra={"fieldConfig": {"defaults": {"unit": "short", "min": 0, "max": 1, "thresholds": {
            "mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 0.15}]},
            "custom": {"thresholdsStyle": {"mode": "line"}}}, "overrides": []}})
    share = "sum by (arm) (rate(cliffguard_requests_total{{{a},category=\"{c}\"}}[5m]))"
    every = f"sum by (arm) (rate(cliffguard_requests_total{{{A}}}[5m]))"
    L.add("timeseries", "Share labelled other / unclassified by arm", [
        target(f"({share.format(a=A, c='other')} or {every} * 0) / {every}", "{{arm}}: other", "A"),
        target(f"({share.format(a=A, c='unclassified')} or {every} * 0) / {every}", "{{arm}}: unclassified", "B")],
        unit="percentunit")
    L.add("timeseries", "Label confidence by arm and layer (median, p10)", [
        target(f"histogram_quantile(0.5, sum by (arm, layer, le) "
               f"(rate(cliffguard_classifier_confidence_bucket{{{A}}}[5m])))", "median {{arm}} {{layer}}", "A"),
        target(f"histogram_quantile(0.1, sum by (arm, layer, le) "
               f"(rate(cliffguard_classifier_confidence_bucket{{{A}}}[5m])))", "p10 {{arm}} {{layer}}", "B")],
        unit="percentunit")

    L.row("User feedback")
    negative = f'sum by (arm) (rate(cliffguard_feedback_total{{{A},sentiment="negative"}}[30m]))'
    rated = f"sum by (arm) (rate(cliffguard_feedback_total{{{A}}}[30m]))"
    L.add("timeseries", "Negative feedback share by arm (30m)", [
        target(f"({negative} or {rated} * 0) / clamp_min({rated}, 1e-9)", "{{arm}}")], unit="percentunit")
    L.add("timeseries", "Feedback per second by arm and sentiment", [
        target(f"sum by (arm, sentiment) (rate(cliffguard_feedback_total{{{A}}}[5m]))", "{{arm}} {{sentiment}}")],
        unit="reqps")
    L.add("timeseries", "Regenerated answers per second by arm and category", [
        target(f"sum by (arm, category) (rate(cliffguard_regenerations_total{{{A}}}[5m]))", "{{arm}} {{category}}")],
        unit="reqps")

    L.row("Judges")
    L.add("timeseries", "Judge calls and failures", [
        target("sum by (result) (rate(cliffguard_judge_calls_total[5m]))", "calls {{result}}", "A"),
        target("sum by (reason) (rate(cliffguard_judge_failures_total[5m]))", "failed: {{reason}}", "B")],
        unit="reqps")
    L.add("timeseries", "Unparseable verdicts", [
        target("rate(cliffguard_judge_parse_failures_total[5m])", "parse failures")], unit="reqps")
    L.add("timeseries", "Position inconsistency (orders disagree)", [
        target(f"sum by (category) (rate(cliffguard_judge_position_inconsistent_total{{{A}}}[5m])) / "
               f"clamp_min(sum by (category) (rate(cliffguard_judged_pairs_total{{{A}}}[5m])), 1e-9)",
               "{{category}}")], unit="percentunit")
    L.add("timeseries", "Judge queue", [
        target("max(cliffguard_judge_queue_length)", "unjudged samples", "A"),
        target("max(cliffguard_judge_queue_lag_seconds)", "lag (s)", "B")])
    L.add("timeseries", "Dead letters (last hour)", [
        target("increase(cliffguard_judge_dead_letters_total[1h])", "dead letters")])
    L.add("timeseries", "Judge latency p95", [
        target("histogram_quantile(0.95, sum by (le) (rate(cliffguard_judge_latency_seconds_bucket[5m])))",
               "p95")], unit="s")

    return {
        "title": "cliffguard: rollouts and regressions", "uid": "cliffguard-rollouts", "schemaVersion": 39,
        "version": 1, "editable": True, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "tags": ["cliffguard"], "panels": L.panels,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "alias", "type": "query", "datasource": DS, "label": "alias", "refresh": 2,
             "query": {"query": "label_values(cliffguard_rollout_stage, alias)", "refId": "alias"},
             "definition": "label_values(cliffguard_rollout_stage, alias)"},
            {"name": "category", "type": "query", "datasource": DS, "label": "category", "refresh": 2,
             "multi": True, "includeAll": True,
             "query": {"query": f"label_values(cliffguard_category_estimate{{{A}}}, category)", "refId": "category"},
             "definition": f"label_values(cliffguard_category_estimate{{{A}}}, category)"},
        ]},
        "annotations": {"list": [{
            "name": "Rollbacks and promotions", "datasource": DS, "enable": True, "iconColor": "red",
            "expr": f'changes(cliffguard_controller_decisions_total{{{A},'
                    f'action=~"rollback|promote|complete|pin_category"}}[1m]) > 0',
            "titleFormat": "{{action}}", "textFormat": "{{alias}}: {{action}}"}]},
    }


DASHBOARDS = {"cliffguard-rollouts.json": rollout_dashboard}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
