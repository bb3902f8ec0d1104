"""`cliffguard simulate`: try a rollout policy on synthetic paired outcomes before a real rollout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from monitoring.policy import RolloutPolicy
from monitoring.simulator import DEFAULT_NAMES, SimSpec, simulate, summarise

out = Console()
err = Console(stderr=True)


def parse_effects(text: str | None) -> dict[str, float]:
    effects: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        try:
            effects[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{part!r}: use name=effect, e.g. reasoning=-0.10") from None
        if not sep or not -1 <= effects[name.strip()] <= 1:
            raise typer.BadParameter(f"{part!r}: effect must be within [-1, 1]")
    return effects


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:,.0f}"


def simulate_cmd(
    policy_file: Annotated[Path | None, typer.Option("--policy", help="rollout policy YAML")] = None,
    effects: Annotated[str | None, typer.Option(help="true P(win)-P(loss) per category, e.g. reasoning=-0.10")] = None,
    categories: Annotated[int, typer.Option(min=1, max=64)] = 8,
    tie_rate: Annotated[float, typer.Option(min=0.0, max=0.95)] = 0.4,
    tolerance: Annotated[float | None, typer.Option(help="overrides the policy's default tolerance")] = None,
    alpha: Annotated[float | None, typer.Option(help="overrides the policy's alpha")] = None,
    check_every: Annotated[int, typer.Option(min=1, help="pairs per category between two looks")] = 10,
    pairs_per_second: Annotated[float, typer.Option(
        min=0.001, help="judged pairs per second per category (default: the default budget of 10/s over 8)")] = 1.25,
    max_pairs: Annotated[int, typer.Option(min=10, help="per category; the run ends undecided past it")] = 10_000,
    runs: Annotated[int, typer.Option(min=1)] = 1000,
    seed: Annotated[int, typer.Option()] = 0,
    method: Annotated[str, typer.Option(help="sequential | threshold (Flagger-like) | mannwhitney (Kayenta-like)")] = (
        "sequential"),
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Simulate rollouts with the real statistics and controller: how often, and how fast, they promote or
    roll back."""
    try:
        raw = yaml.safe_load(policy_file.read_text()) if policy_file else {}
        policy = RolloutPolicy.model_validate(raw or {})
    except (OSError, yaml.YAMLError, ValidationError) as e:
        err.print(f"[bold red]error:[/] policy: {e}")
        raise typer.Exit(2) from None
    if tolerance is not None:
        policy.default_category.tolerance = tolerance
    if alpha is not None:
        policy.alpha = alpha
    if method not in ("sequential", "threshold", "mannwhitney"):
        raise typer.BadParameter("method must be sequential, threshold or mannwhitney")
    names = (DEFAULT_NAMES + [f"cat{i}" for i in range(9, 65)])[:categories]
    eff = parse_effects(effects)
    unknown = set(eff) - set(names)
    if unknown:
        err.print(f"[bold red]error:[/] --effects names {sorted(unknown)}, not among the categories {names}")
        raise typer.Exit(2)
    spec = SimSpec(names, eff, tie_rate, check_every, pairs_per_second, max_pairs, runs, seed,
                   method)  # type: ignore[arg-type]
    try:
        if as_json:
            results = simulate(spec, policy)
        else:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task(f"simulating {runs} rollouts", total=runs)
                results = simulate(spec, policy, progress_cb=lambda done: bar.update(task, completed=done))
    except ValueError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    report = summarise(spec, results, len(policy.stages))
    if as_json:
        print(json.dumps(report))
        return
    out.print(f"{runs} rollouts, {categories} categories, method {method}, alpha {policy.alpha}, tie rate "
              f"{tie_rate}, a look every {check_every} pairs, at most {max_pairs} pairs per category")
    out.print(f"rolled back [bold]{_fmt(report['rollback_rate'], True)}[/] (median "
              f"{_fmt(report['median_pairs_to_rollback'])} pairs, p95 {_fmt(report['p95_pairs_to_rollback'])}), "
              f"promoted [bold]{_fmt(report['promotion_rate'], True)}[/] (median "
              f"{_fmt(report['median_pairs_to_promote'])} pairs per category), undecided "
              f"{_fmt(report['undecided_rate'], True)}")
    t = Table("category", "effect", "tolerance", "rolled back", "pairs p50", "pairs p95", "time p50 (s)", "pinned")
    for cat, r in report["categories"].items():
        t.add_row(cat, f"{r['effect']:+.3f}", f"{policy.category(cat).tolerance:g}", _fmt(r["rollback_rate"], True),
                  _fmt(r["median_pairs_to_rollback"]), _fmt(r["p95_pairs_to_rollback"]),
                  _fmt(r["median_seconds_to_rollback"]), _fmt(r["pinned_rate"], True))
    out.print(t)
    out.print(f"reached the last stage ({policy.stages[-1].name}): {_fmt(report['reached_last_stage_rate'], True)} "
              f"(median {_fmt(report['median_pairs_to_reach_last_stage'])} pairs per category, p95 "
              f"{_fmt(report['p95_pairs_to_reach_last_stage'])}); completed (the candidate became stable): median "
              f"{_fmt(report['median_pairs_to_complete'])}, p95 {_fmt(report['p95_pairs_to_complete'])}")
    if report["weight_pct_at_rollback"]["runs"]:
        out.print("rolled back at weight: " + ", ".join(f"{w}% x{n}" for w, n in
                                                        report["weight_pct_at_rollback"]["runs"].items()))
    stages = report["median_pairs_per_category_at_stage"]
    if stages:
        out.print("median pairs per category when each stage was passed: " + ", ".join(
            f"{s.name} {_fmt(v)}" for s, v in zip(policy.stages, stages, strict=False)))


