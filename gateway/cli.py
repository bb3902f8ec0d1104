"""The `cliffguard` command line."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli_classifier import classifier_app, classify_cmd
from gateway.cli_judgments import judgments_app
from gateway.cli_simulate import simulate_cmd
from gateway.config import ConfigError, Settings, load_settings

app = typer.Typer(help="cliffguard: staged-rollout gateway for fine-tuned LLMs.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
rollout_app = typer.Typer(help="Change an alias's rollout.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
app.add_typer(classifier_app, name="classifier")
app.command("classify")(classify_cmd)
app.add_typer(judgments_app, name="judgments")
app.command("simulate")(simulate_cmd)

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config (default: $CLIFFGUARD_CONFIG)")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="gateway URL (default: $CLIFFGUARD_URL)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="admin token (default: $CLIFFGUARD_TOKEN)")]


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
    from gateway.server import serve as run

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
    from gateway.worker_process import run_worker

    _run_process(config, run_worker)


def _client(url: str | None, token: str | None):  # type: ignore[no-untyped-def]
    from gateway.admin_client import AdminClient

    return AdminClient(url, token)


@app.command()
def status(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show every alias: stable, candidate and weight."""
    from gateway.admin_client import AdminError

    try:
        state = _client(url, token).state()
    except AdminError as e:
        raise _fail(str(e)) from None
    t = Table(title=f"cliffguard @ revision {state['revision']}" + ("" if state["redis_ok"] else
              " [red](redis unreachable: last known state)[/]"))
    for col in ("alias", "stable", "candidate", "weight", "rollout id"):
        t.add_column(col)
    for a in state["aliases"]:
        t.add_row(a["name"], a["stable"], a["candidate"] or "-", f"{a['weight_pct']:g}%", a["rollout_id"] or "-")
    out.print(t)


@rollout_app.command("start")
def rollout_start(
    alias: str,
    candidate: Annotated[str, typer.Option(help="the version to roll out")],
    reason: Annotated[str | None, typer.Option(help="why (recorded in the event log)")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Start a managed rollout: the controller takes the candidate through the stages, or rolls it back."""
    from gateway.admin_client import AdminError

    try:
        a = _client(url, token).start_rollout(alias, candidate, reason)
    except AdminError as e:
        raise _fail(str(e)) from None
    out.print(f"[green]ok[/] {alias}: rolling out [bold]{a['candidate']}[/] against {a['stable']}, phase "
              f"{a['phase']}, weight {a['weight_pct']:g}%")


@app.command()
def demo(
    regress: Annotated[str, typer.Option(help="the candidate's quality change per category")] = "reasoning=-0.35",
    tolerance: Annotated[float, typer.Option(help="tolerated drop of P(win) - P(loss)")] = 0.15,
    rps: Annotated[float, typer.Option(help="requests per second of demo traffic")] = 80.0,
    max_seconds: Annotated[float, typer.Option(help="stop after this long if nothing was decided")] = 300.0,
) -> None:
    """A live demo, no GPU needed: a fine-tune that regresses on reasoning is rolled back automatically."""
    import asyncio

    from gateway.cli_simulate import parse_effects
    from gateway.demo import run_demo

    result = asyncio.run(run_demo(parse_effects(regress), tolerance, rps, max_seconds, out))
    if result.get("phase") == "rolled_back":
        ev = next(e for e in result["events"] if e["type"] == "controller_rollback")
        s = ev["categories"][ev["category"]]
        out.print(f"[bold red]rolled back[/]: {ev['reason']} - estimate {s['estimate']:+.3f}, interval "
                  f"[{s['lower']:+.3f}, {s['upper']:+.3f}] after {s['n']} judged pairs "
                  f"(log e-value {s['log_evalue']} >= threshold {s['threshold']})")
    elif result.get("phase") == "promoted":
        out.print("[bold green]promoted[/]: the candidate became stable")
    else:
        raise _fail("no decision within --max-seconds")


@app.command()
def controller(config: ConfigOpt = None) -> None:
    """Run the rollout controller alone (it also runs inside `serve`; one leader acts at a time)."""
    from gateway.controller_process import run_controller

    _run_process(config, run_controller)


@rollout_app.command("set")
def rollout_set(
    alias: str,
    candidate: Annotated[str | None, typer.Option(help="candidate version (omit with --weight 0 to remove)")] = None,
    weight: Annotated[float, typer.Option(help="candidate share in percent (0-100)")] = 0.0,
    reason: Annotated[str | None, typer.Option(help="why (recorded in the event log)")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Set an alias's candidate and its traffic share (applies on every replica within 1 s)."""
    from gateway.admin_client import AdminError

    if candidate is None and weight > 0:
        raise _fail("--weight above 0 needs --candidate", 2)
    try:
        a = _client(url, token).set_split(alias, candidate, weight, reason)
    except AdminError as e:
        raise _fail(str(e)) from None
    cand = f"candidate [bold]{a['candidate']}[/] at {a['weight_pct']:g}%" if a["candidate"] else "no candidate"
    out.print(f"[green]ok[/] {alias}: stable {a['stable']}, {cand}")
if __name__ == "__main__":
    app()
