"""`cliffguard judgments export|show`: the stored judged pairs, read from Redis."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Annotated, Any

import typer
from rich.panel import Panel

from gateway.cli.common import err, out, settings_or_exit
from gateway.config import Settings
from gateway.processes.embedded_redis import redis_url_for_tools
from judges.queue import Keys
from judges.records import PairResult
from router.store import connect

judgments_app = typer.Typer(help="Judged pairs: export for review, or show one.", no_args_is_help=True)
ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config (Redis URL, key prefix)")]


def parse_since(value: str | None, now: float) -> float:
    """'24h', '30m', '7d', '90s', or a Unix timestamp; None: everything."""
    if value is None:
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use e.g. 24h, 30m, 7d or a Unix timestamp") from None


async def _with_redis(settings: Settings, fn: Any) -> Any:
    try:
        url = redis_url_for_tools(settings.redis_url, settings.data_dir)
    except FileNotFoundError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1) from None
    client = connect(url, timeout_s=5.0)
    try:
        return await fn(client, Keys(settings.key_prefix))
    finally:
        await client.aclose()


@judgments_app.command()
def export(
    alias: Annotated[str, typer.Option(help="the public model name")],
    since: Annotated[str | None, typer.Option(help="only pairs newer than this: 24h, 7d, or a Unix time")] = None,
    output: Annotated[str | None, typer.Option("--out", "-o", help="file (default: stdout)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Write the stored pairs of an alias as JSONL (oldest first)."""
    settings = settings_or_exit(config)
    start = parse_since(since, time.time())

    async def run(client: Any, keys: Keys) -> int:
        ids = await client.zrangebyscore(keys.pairs(alias), start, "+inf")
        sink = open(output, "w") if output else sys.stdout  # noqa: SIM115
        n = 0
        try:
            for i in range(0, len(ids), 500):
                batch = ids[i:i + 500]
                for raw in await client.mget([keys.pair(x.decode()) for x in batch]):
                    if raw:  # a pair expires a little before its index entry (trimmed by the next write)
                        sink.write(raw.decode() + "\n")
                        n += 1
        finally:
            if output:
                sink.close()
        return n

    n = asyncio.run(_with_redis(settings, run))
    err.print(f"exported {n} pairs of {alias}" + (f" to {output}" if output else ""))


@judgments_app.command()
def show(request_id: str, config: ConfigOpt = None) -> None:
    """Print one judged pair: the question, both answers and the judge's reasoning."""
    settings = settings_or_exit(config)

    async def run(client: Any, keys: Keys) -> Any:
        return await client.get(keys.pair(request_id))

    raw = asyncio.run(_with_redis(settings, run))
    if raw is None:
        err.print(f"[bold red]error:[/] no stored pair {request_id!r} (unknown, or older than its TTL)")
        raise typer.Exit(1)
    p = PairResult.model_validate_json(raw)
    outcomes = {1: "[green]candidate wins[/]", 0: "[yellow]tie[/]", -1: "[red]candidate loses[/]"}
    result = outcomes[p.outcome] if p.outcome is not None else f"rating {p.rating}"
    out.print(f"{p.alias} / {p.category} / rollout {p.rollout_id or '-'}  ->  {result}")
    out.print(Panel(p.question, title="question"))
    out.print(Panel(p.stable_answer.render() if p.stable_answer else "", title=f"stable ({p.stable})"))
    if p.candidate_answer is not None:
        out.print(Panel(p.candidate_answer.render(), title=f"candidate ({p.candidate})"))
    elif p.decided_by == "candidate_failed":
        out.print(Panel("(no answer)", title=f"candidate ({p.candidate})", border_style="red"))
    if p.decided_by != "judge":
        out.print(f"[dim]decided without a judge call: {p.decided_by}[/]")
    for i, text in enumerate(p.judge_explanations):
        order = ("candidate as A", "stable as A")[i] if p.mode == "pairwise" else "rating"
        verdict = p.verdicts[i] if i < len(p.verdicts) else ""
        out.print(Panel(text, title=f"judge ({order}) {verdict}"))
