"""`cliffguard preflight`, `cliffguard suite build` and `cliffguard report`: the regression audit before a
rollout, its suites, and the reports. They reach Redis like `cliffguard judgments` (redis_url, or the
embedded Redis's socket link) and the backends and judge directly: nothing passes through the gateway's
request path."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.cli.common import err, out, settings_or_exit
from gateway.cli.judgments import _with_redis, parse_since
from gateway.config import Settings
from judges.preflight import suite as suites
from judges.queue import Keys

if TYPE_CHECKING:
    from judges.preflight.records import PreflightResult

# Modules that define Prometheus metrics are imported inside the commands: the CLI module is loaded by
# `cliffguard serve` too, which must set PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported.

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config (Redis, judge, policy)")]
suite_app = typer.Typer(help="Capability suites for preflight.", no_args_is_help=True)


def _policy(settings: Settings, alias: str) -> Any:
    return settings.controller.policies.get(alias, settings.controller.policy)


def _fail(msg: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    return typer.Exit(code)


def preflight_cmd(
    alias: Annotated[str, typer.Option(help="the alias whose stable is the baseline")],
    candidate: Annotated[str, typer.Option(help="the registered version to audit")],
    suite: Annotated[Path, typer.Option(help="suite file (JSONL; MT-Bench questions load as is)", exists=True,
                                        dir_okay=False)],
    grader: Annotated[str | None, typer.Option(help="for items that name none: exact, numeric, json, or "
                                                    "module:function (default: the judge)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="items in flight at once")] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, help="per answer")] = 256,
    fresh: Annotated[bool, typer.Option("--fresh", help="score every item again instead of resuming")] = False,
    config: ConfigOpt = None,
) -> None:
    """Replay a suite through stable and the candidate, judge or check every pair, and record the verdict per
    category on the candidate (what `rollout start` checks). Exits 1 when a category fails."""
    from judges.judge import Judge
    from judges.openai_http import OpenAIHTTP
    from judges.preflight.graders import GraderError
    from judges.preflight.runner import Plan, PreflightRunner
    from judges.preflight.store import PreflightStore
    from judges.redaction import Redactor
    from router.store import StateStore

    settings = settings_or_exit(config)
    try:
        s = suites.load(suite)
    except (suites.SuiteError, OSError) as e:
        raise _fail(f"{suite}: {e}", 2) from None
    policy = _policy(settings, alias)

    async def run(client: Any, keys: Keys) -> PreflightResult:
        store = StateStore(client, settings.key_prefix)
        snap = await store.load()
        a = snap.aliases.get(alias)
        if a is None:
            raise _fail(f"unknown alias {alias!r}")
        if candidate not in snap.versions:
            raise _fail(f"unknown version {candidate!r}: register it first")
        if candidate == a.stable:
            raise _fail(f"{candidate!r} is the stable version of {alias}")
        http = OpenAIHTTP()
        runner = PreflightRunner(PreflightStore(store), Judge(settings.judging.judge, http), http,
                                 Redactor.from_config(settings.judging.sampling))
        plan = Plan(alias, snap.versions[a.stable], snap.versions[candidate], policy,
                    {"temperature": 0.0, "max_tokens": max_tokens}, grader, concurrency,
                    settings.judging.worker.generation_timeout_s)
        out.print(f"preflight of [bold]{candidate}[/] against [bold]{a.stable}[/] on suite {s.id} "
                  f"({len(s.items)} items: {', '.join(f'{c} {n}' for c, n in s.categories.items())})")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[note]}"), TimeElapsedColumn())
        try:
            with Progress(*columns, console=err) as bar:
                task = bar.add_task("scoring", total=len(s.items), note="")
                seen: dict[str, int] = {}

                def tick(kind: str) -> None:
                    seen[kind] = seen.get(kind, 0) + 1
                    bar.update(task, advance=1, note=", ".join(f"{k} {v}" for k, v in sorted(seen.items())))

                return await runner.run(s, plan, f"cli:{os.environ.get('USER', '?')}@{socket.gethostname()}",
                                        fresh, tick)
        except GraderError as e:
            raise _fail(str(e), 2) from None
        finally:
            await http.close()

    result = asyncio.run(_with_redis(settings, run))
    _print_verdict(result)
    if not result.verdict.passed:
        raise typer.Exit(1)


def _print_verdict(r: PreflightResult) -> None:
    t = Table(title=f"preflight {r.run_id}: {r.candidate} minus {r.stable} on {r.suite_id}")
    for col in ("category", "items", "W/T/L", "estimate", "interval", "threshold", "checks", "result"):
        t.add_column(col, justify="left" if col in ("category", "result", "checks") else "right")
    for c in r.verdict.categories.values():
        checks = f"cand {c.candidate_passed}/{c.graded}, stable {c.stable_passed}/{c.graded}" if c.graded else "-"
        t.add_row(c.category, str(c.n), f"{c.wins}/{c.ties}/{c.losses}", f"{c.estimate:+.3f}",
                  f"[{c.lower:+.3f}, {c.upper:+.3f}]", f"-{c.threshold:g}", checks,
                  "[green]pass[/]" if c.passed else "[red]fail[/]" + (" (shown)" if c.established else ""))
    out.print(t)
    for e in r.errors[:10]:
        err.print(f"[yellow]not scored[/] {e}", highlight=False)
    word = "[bold green]PASSED[/]" if r.verdict.passed else f"[bold red]FAILED[/] on {', '.join(r.verdict.failed)}"
    out.print(f"{word}; recorded on {r.candidate} (suite {r.suite_id}, hash {r.suite_hash[:12]}); "
              f"report: cliffguard report preflight {r.run_id}")


@suite_app.command("build")
def build(
    alias: Annotated[str, typer.Option(help="draw from this alias's captured (redacted) traffic")],
    per_category: Annotated[int, typer.Option(min=1, help="items per category (fewer where fewer were captured)")],
    seed: Annotated[int, typer.Option(help="the draw's seed: the same captured prompts and seed give the same "
                                           "suite and hash")] = 0,
    since: Annotated[str | None, typer.Option(help="only prompts captured since: 24h, 7d, or a Unix time")] = None,
    name: Annotated[str | None, typer.Option(help="suite name (default: the alias)")] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="file (default: <name>@<hash>.jsonl)")] = None,
    config: ConfigOpt = None,
) -> None:
    """A stratified sample of captured prompts per category into a versioned suite file."""
    settings = settings_or_exit(config)
    start = parse_since(since, time.time())

    async def run(client: Any, keys: Keys) -> list[dict[str, Any]]:
        ids = await client.zrangebyscore(keys.pairs(alias), start, "+inf")
        records = []
        for i in range(0, len(ids), 500):
            records += [orjson.loads(r) for r in await client.mget([keys.pair(x.decode()) for x in ids[i:i + 500]])
                        if r]
        return records

    records = asyncio.run(_with_redis(settings, run))
    items = suites.stratified(records, per_category, seed)
    if not items:
        raise _fail(f"no captured prompts for {alias!r}" + (f" since {since}" if since else ""))
    s = suites.make_suite(name or alias, items, source=f"captured traffic of {alias}, seed {seed}, "
                                                      f"{per_category} per category")
    path = output or Path(f"{s.id}.jsonl")
    path.write_text(suites.dumps(s), encoding="utf-8")
    t = Table(title=f"suite {s.id}")
    t.add_column("category")
    t.add_column("items", justify="right")
    for c, n in s.categories.items():
        t.add_row(c, str(n))
    out.print(t)
    out.print(f"wrote {path} ({len(s.items)} items from {len(records)} captured pairs; hash {s.hash})")


def report_cmd(
    kind: Annotated[str, typer.Argument(help="preflight or rollout")],
    ref: Annotated[str, typer.Argument(help="preflight: run id or candidate version; rollout: rollout id or alias")],
    fmt: Annotated[str, typer.Option("--format", help="md or html")] = "md",
    output: Annotated[Path | None, typer.Option("--out", "-o", help="file (default: stdout)")] = None,
    config: ConfigOpt = None,
) -> None:
    """A report with per-category charts, the worst regressed examples and the numbers behind the decision."""
    from gateway.admin.reports import NotFound, preflight_report, rollout_report
    from monitoring.report import html as report_html
    from monitoring.report import markdown as report_md
    from router.classify.taxonomy import Taxonomy
    from router.store import StateStore

    if kind not in ("preflight", "rollout") or fmt not in ("md", "html"):
        raise _fail("use: cliffguard report preflight|rollout ID --format md|html", 2)
    settings = settings_or_exit(config)
    taxonomy = list(Taxonomy.build(settings.classifier.taxonomy).names)  # the rollback budget's split

    async def run(client: Any, keys: Keys) -> Any:
        store = StateStore(client, settings.key_prefix)
        try:
            if kind == "preflight":
                return await preflight_report(store, ref)
            return await rollout_report(store, ref, lambda a: _policy(settings, a), taxonomy)
        except NotFound as e:
            raise _fail(str(e)) from None

    r = asyncio.run(_with_redis(settings, run))
    text = report_html(r) if fmt == "html" else report_md(r)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

