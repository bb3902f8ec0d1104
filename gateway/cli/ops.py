"""Operator commands: status, versions, events, and the rollout operations. All through the admin API."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli.client import AdminClient, AdminError

out = Console()
err = Console(stderr=True)
UrlOpt = Annotated[str | None, typer.Option("--url", help="gateway URL (default: $CLIFFGUARD_URL)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="admin token (default: $CLIFFGUARD_TOKEN)")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="why (recorded in the audit log)")]
rollout_app = typer.Typer(help="Change an alias's rollout.", no_args_is_help=True)


def _call(url: str | None, token: str | None, fn: Any) -> Any:
    try:
        return fn(AdminClient(url, token))
    except AdminError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(1) from None


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


_PHASE_STYLE = {"rolled_back": "red", "aborted": "red", "inconclusive": "yellow", "paused": "yellow",
                "promoted": "green", "canary": "cyan", "shadow": "magenta"}


def status(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Every alias: stable, candidate, phase, stage, weight, and per-category estimates with bounds."""
    def run(c: AdminClient) -> None:
        state = c.state()
        t = Table(title=f"cliffguard @ state revision {state['revision']}" + ("" if state["redis_ok"] else
                  " [red](redis unreachable: last known state)[/]"))
        for col in ("alias", "stable", "candidate", "phase", "stage", "weight", "pinned", "alias revision"):
            t.add_column(col)
        for a in state["aliases"]:
            style = _PHASE_STYLE.get(a["phase"], "default")
            t.add_row(a["name"], a["stable"], a["candidate"] or "-", f"[{style}]{a['phase']}[/]", str(a["stage"]),
                      f"{a['weight_pct']:g}%", ", ".join(a["pinned_categories"]) or "-", str(a["revision"]))
        out.print(t)
        for a in state["aliases"]:
            if not a["candidate"]:
                continue
            r = c.call("GET", f"/admin/aliases/{a['name']}/stats")
            if not r["analysed"]:
                out.print(f"[dim]{a['name']}: {r['note']}[/]")
                continue
            out.print(_analysis_table(a, r))
            eta = "not on track" if r["eta_s"] is None else _duration(r["eta_s"])
            out.print(f"  next gate: lower bound above -{r['next_gate']:.3f} in every acting category; "
                      f"estimated time to it: [bold]{eta}[/]; pairs this stage {r['pairs_in_stage']}")
            out.print(f"  controller: {r['decision'] or '-'}", highlight=False)
            for g in r["guards"].values():
                style = "red" if g["tripped"] else "dim"
                out.print(f"  [{style}]guard {g['detail']}[/]", highlight=False)
            if r["exposure"]:
                out.print("  candidate served: " + ", ".join(f"{k} {v}" for k, v in sorted(r["exposure"].items())))
    _call(url, token, run)


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def _analysis_table(a: dict[str, Any], r: dict[str, Any]) -> Table:
    t = Table(title=f"{a['name']}: candidate {a['candidate']} minus stable {a['stable']} (stage {a['stage']}, "
                    f"{a['weight_pct']:g}%)")
    for col in ("category", "pairs", "W/T/L", "estimate", "lower", "upper", "gate", "tolerance", "to gate", "eta",
                "status"):
        t.add_column(col, justify="left" if col in ("category", "status") else "right")
    for cat, s in sorted(r["categories"].items()):
        color = {"regressed": "red", "gate met": "green"}.get(s["status"], "yellow")
        flags = (" (muted)" if s["muted"] else "") + (" (pinned)" if s["pinned"] else "")
        t.add_row(cat, str(s["n"]), f"{s['wins']}/{s['ties']}/{s['losses']}", f"{s['estimate']:+.3f}",
                  f"{s['lower']:+.3f}", f"{s['upper']:+.3f}", f">-{s['gate_margin']:.3f}", f"-{s['tolerance']}",
                  "-" if s["pairs_to_gate"] is None else str(s["pairs_to_gate"]),
                  "-" if s["eta_s"] is None else _duration(s["eta_s"]), f"[{color}]{s['status']}[/]{flags}")
    return t


def versions(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Registered versions, which are in use, and when retired ones will be pruned."""
    def run(c: AdminClient) -> None:
        data = c.call("GET", "/admin/versions")
        t = Table(title=f"versions (retired or unused ones kept {data['retention_days']:g} days)")
        for col in ("name", "model", "backend", "in use", "retired", "prune after", "metadata"):
            t.add_column(col)
        for v in data["versions"]:
            t.add_row(v["name"], v["model"], v["base_url"], "[green]yes[/]" if v["in_use"] else "no",
                      f"{_when(v['retired_at'])} ({v['retired_reason']})" if v["retired_at"] else "-",
                      _when(v["prune_after"]), ", ".join(f"{k}={w}" for k, w in v["metadata"].items()) or "-")
        out.print(t)
    _call(url, token, run)


def events(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events")] = False,
    count: Annotated[int, typer.Option(help="how many recent events")] = 20,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """The audit/event log: who did what, when, why, with the numbers behind controller decisions."""
    def line(e: dict[str, Any]) -> None:
        extra = ""
        if e.get("category"):
            s = (e.get("categories") or {}).get(e["category"], {})
            extra = (f" [{e['category']}: estimate {s.get('estimate')}, bounds [{s.get('lower')}, {s.get('upper')}], "
                     f"n={s.get('n')}]") if s else f" [{e['category']}]"
        after = e.get("after") or {}
        state = f" -> {after.get('phase')} {after.get('weight_bp', 0) / 100:g}%" if after else ""
        if e.get("exposure") and e["type"] in ("rolled_back", "aborted", "category_pinned"):
            extra += f" (candidate had served {sum(e['exposure'].values())} requests)"
        out.print(f"[dim]{_when(e.get('ts'))}[/] [bold]{e['type']}[/] by {e.get('actor', '?')}"
                  f"{(': ' + e['reason']) if e.get('reason') else ''}{state}{extra}", highlight=False)

    def run(c: AdminClient) -> None:
        recent = c.call("GET", "/admin/events", params={"count": count})["events"]
        for e in reversed(recent):
            line(e)
        last = recent[0]["id"] if recent else "0-0"
        while follow:
            time.sleep(1.0)
            for e in c.call("GET", "/admin/events", params={"after": last})["events"]:
                line(e)
                last = e["id"]
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow
        _call(url, token, run)


def _op(alias: str, op: str, url: str | None, token: str | None, **body: Any) -> None:
    r = _call(url, token, lambda c: c.alias_op(alias, op, **body))
    a = r.get("after", r)
    cand = f"candidate [bold]{a['candidate']}[/] at {a['weight_pct']:g}%" if a["candidate"] else "no candidate"
    out.print(f"[green]ok[/] {alias}: {r.get('transition', op)} - stable [bold]{a['stable']}[/], {cand}, "
              f"phase {a['phase']} (alias revision {a['revision']})")


@rollout_app.command("start")
def start(alias: str, candidate: Annotated[str, typer.Option(help="the version to roll out")],
          reason: ReasonOpt = None,
          force: Annotated[bool, typer.Option("--force", help="start without a passed preflight although the "
                                                              "policy requires one (needs --reason; audited)")] = False,
          url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Start a managed rollout: the controller takes the candidate through the stages or rolls it back."""
    if force and not (reason and len(reason.strip()) >= 3):
        err.print("[bold red]error:[/] --force needs --reason (recorded in the audit log)")
        raise typer.Exit(2)
    _op(alias, "rollout", url, token, candidate=candidate, reason=reason, force=force or None)


@rollout_app.command("promote")
def promote(alias: str, full: Annotated[bool, typer.Option("--full", help="the candidate becomes stable now")] = False,
            reason: ReasonOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Promote to the next stage (or --full)."""
    _op(alias, "promote", url, token, full=full, reason=reason)


@rollout_app.command("pause")
def pause(alias: str, reason: ReasonOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Pause: the weight holds and the controller stops acting."""
    _op(alias, "pause", url, token, reason=reason)


@rollout_app.command("resume")
def resume(alias: str, reason: ReasonOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Resume a paused rollout."""
    _op(alias, "resume", url, token, reason=reason)


@rollout_app.command("abort")
def abort(alias: str, reason: Annotated[str, typer.Option("--reason", "-r", help="why (required)")],
          url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Abort the rollout: the candidate leaves traffic."""
    _op(alias, "abort", url, token, reason=reason)


@rollout_app.command("rollback")
def rollback(alias: str, reason: Annotated[str, typer.Option("--reason", "-r", help="why (required)")],
             to: Annotated[str | None, typer.Option("--to", help="any retained version")] = None,
             url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Roll back to stable (during a rollout), to the previous stable, or --to any retained version."""
    _op(alias, "rollback", url, token, reason=reason, to=to)


@rollout_app.command("pin")
def pin(alias: str, category: str, reason: ReasonOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Route one capability category to stable."""
    _op(alias, "pin", url, token, category=category, reason=reason)


@rollout_app.command("unpin")
def unpin(alias: str, category: str, reason: ReasonOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Stop routing a category to stable."""
    _op(alias, "unpin", url, token, category=category, reason=reason)


@rollout_app.command("set")
def set_split(alias: str,
              candidate: Annotated[str | None, typer.Option(help="candidate version (omit with --weight 0)")] = None,
              weight: Annotated[float, typer.Option(help="candidate share in percent (0-100)")] = 0.0,
              reason: ReasonOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Set a candidate and its share by hand (the controller leaves a manual split alone)."""
    if candidate is None and weight > 0:
        err.print("[bold red]error:[/] --weight above 0 needs --candidate")
        raise typer.Exit(2)
    a = _call(url, token, lambda c: c.set_split(alias, candidate, weight, reason))
    cand = f"candidate [bold]{a['candidate']}[/] at {a['weight_pct']:g}%" if a["candidate"] else "no candidate"
    out.print(f"[green]ok[/] {alias}: stable {a['stable']}, {cand}")
