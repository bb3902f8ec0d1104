"""The `cliffguard` command line."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
from rich.console import Console

from gateway.cli.classifier import classifier_app, classify_cmd
from gateway.cli.judgments import judgments_app
from gateway.cli.ops import events, rollout_app, status, versions
from gateway.cli.preflight import preflight_cmd, report_cmd, suite_app
from gateway.cli.simulate import simulate_cmd
from gateway.config import ConfigError, Settings, load_settings

app = typer.Typer(help="cliffguard: staged-rollout gateway for fine-tuned LLMs.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(rollout_app, name="rollout")
app.command("status")(status)
app.command("versions")(versions)
app.command("events")(events)
app.add_typer(classifier_app, name="classifier")
app.command("classify")(classify_cmd)
app.add_typer(judgments_app, name="judgments")
app.command("simulate")(simulate_cmd)
app.command("preflight")(preflight_cmd)
app.add_typer(suite_app, name="suite")
app.command("report")(report_cmd)

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config (default: $CLIFFGUARD_CONFIG)")]


def _fail(msg: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    return typer.Exit(code)


@app.command()
def serve(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the gateway (OpenAI-compatible proxy, admin API, /metrics)."""
    try:
        settings = load_settings(config)
    except ConfigError as e:
        raise _fail(str(e), 2) from None
    from gateway.processes.server import serve as run

    where = f"http://{settings.listen.host}:{settings.listen.port}"
    redis = settings.redis_url or f"embedded ({settings.data_dir / 'redis'})"
    out.print(f"[bold green]cliffguard[/] listening on [link={where}]{where}[/] with {settings.workers} "
              f"worker(s); redis: {redis}")
    for a in settings.aliases:
        cand = f", candidate {a.candidate} at {a.weight_pct:g}%" if a.candidate else ""
        out.print(f"  alias [cyan]{a.name}[/]: stable {a.stable}{cand}")
    run(settings, config, log_level)


def _run_process(config: str | None, main: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    import asyncio

    try:
        settings = load_settings(config)
    except ConfigError as e:
        raise _fail(str(e), 2) from None
    try:
        asyncio.run(main(settings))
    except FileNotFoundError as e:  # no Redis to reach
        raise _fail(str(e)) from None


@app.command()
def worker(config: ConfigOpt = None) -> None:
    """Run a judge worker: consumes sampled requests, judges pairs, records outcomes (any number of them)."""
    from gateway.processes.worker import run_worker

    _run_process(config, run_worker)


@app.command()
def demo(
    regress: Annotated[str, typer.Option(help="the candidate's quality change per category")] = "reasoning=-0.35",
    tolerance: Annotated[float, typer.Option(help="tolerated drop of P(win) - P(loss)")] = 0.15,
    rps: Annotated[float, typer.Option(help="requests per second of demo traffic")] = 80.0,
    max_seconds: Annotated[float, typer.Option(help="stop after this long if nothing was decided")] = 300.0,
    stay: Annotated[bool, typer.Option(help="keep the gateway and its console up after the decision")] = False,
) -> None:
    """A live demo, no GPU needed: a fine-tune that regresses on reasoning is rolled back automatically."""
    import asyncio

    from gateway.cli.simulate import parse_effects
    from gateway.demo.run import run_demo
    from gateway.processes.server import unwind_on_stop_signals

    unwind_on_stop_signals()
    result = asyncio.run(run_demo(parse_effects(regress), tolerance, rps, max_seconds, out, stay))
    if result.get("phase") not in ("rolled_back", "promoted"):
        raise _fail("no decision within --max-seconds")


@app.command()
def controller(config: ConfigOpt = None) -> None:
    """Run the rollout controller alone (it also runs inside `serve`; one leader acts at a time)."""
    from gateway.processes.controller import run_controller

    _run_process(config, run_controller)

