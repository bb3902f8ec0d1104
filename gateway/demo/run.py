"""`cliffguard demo`: a staged rollout caught regressing, live, on one machine with no GPU.

It runs the real gateway (embedded Redis, classifier, sampling, the leader-elected controller), a real
judge worker, and three small local OpenAI-compatible servers: the stable and candidate versions, whose
answers carry a hidden quality score drawn per category as configured (a labelled simulation), and a
judge that prefers the answer with the higher score. Traffic uses the taxonomy's example prompts. The
terminal shows the stage, the per-category estimates closing in, and the rollback when the candidate's
weak category is caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.classification import prepare
from gateway.config import Settings
from judges.queue import JudgeQueue
from judges.worker import JudgeWorker
from monitoring.analysis import RolloutAnalysis
from router.classify.taxonomy import OTHER, Taxonomy
from router.live_state import LiveState
from router.state import Phase
from router.store import StateStore, connect

ADMIN_TOKEN = "demo-admin"
_QUALITY = re.compile(r"\[quality (\d\.\d+)\]")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Running = list[tuple[uvicorn.Server, threading.Thread]]


def _serve_in_thread(app: Any, port: int, servers: Running, timeout_s: float = 300) -> None:
    """Starts a server and adds it to `servers` at once, so the caller stops it whatever happens next."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False,
                                           loop="uvloop", http="httptools"))
    thread = threading.Thread(target=server.run, daemon=True)
    servers.append((server, thread))
    thread.start()
    deadline = time.time() + timeout_s  # generous: a busy 2-core machine is slow to start a gateway
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"a demo server on port {port} failed to start (see the log above)")
        if time.time() > deadline:
            raise RuntimeError(f"a demo server on port {port} did not start within {timeout_s:.0f} s")
        time.sleep(0.05)


def demo_backend(name: str, prompts: dict[str, str], quality: dict[str, float], seed: int) -> Starlette:
    """An OpenAI-compatible server whose answer quality depends on the prompt's category."""
    rng = random.Random(seed)

    async def chat(request: Request) -> Response:
        body = await request.json()
        question = body["messages"][-1]["content"]
        category = prompts.get(question, OTHER)
        score = min(max(rng.gauss(quality.get(category, 0.7), 0.15), 0.0), 1.0)
        await asyncio.sleep(0.005)
        text = f"{name} answers: a reply to '{question[:40]}'. [quality {score:.2f}]"
        return JSONResponse({"id": f"{name}-1", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model"}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


def demo_judge() -> Starlette:
    """Prefers the answer with the higher hidden quality; a tie within 0.1."""
    answer = re.compile(r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End", re.S)

    async def chat(request: Request) -> Response:
        body = await request.json()
        found = dict(answer.findall(body["messages"][-1]["content"]))
        qa, qb = (float(m.group(1)) if (m := _QUALITY.search(found.get(k, ""))) else 0.0 for k in ("A", "B"))
        verdict = "[[A]]" if qa > qb + 0.1 else "[[B]]" if qb > qa + 0.1 else "[[C]]"
        text = f"Comparing quality {qa:.2f} and {qb:.2f}. {verdict}"
        return JSONResponse({"id": "judge", "object": "chat.completion", "model": "demo-judge",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def demo_settings(data_dir: Path, port: int, stable_url: str, cand_url: str, judge_url: str,
                  tolerance: float) -> Settings:
    return Settings(
        listen={"host": "127.0.0.1", "port": port}, data_dir=data_dir,
        auth={"admin_tokens": [{"name": "demo", "token": ADMIN_TOKEN, "role": "admin"}]},
        versions=[{"name": "base-v1", "base_url": stable_url, "model": "base-v1"},
                  {"name": "finetune-v2", "base_url": cand_url, "model": "finetune-v2"}],
        aliases=[{"name": "support-bot", "stable": "base-v1"}],
        judging={"single_when_no_candidate": False,  # the demo judge compares; it does not rate
                 "sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
                 "judge": {"base_url": judge_url, "model": "demo-judge"},
                 "worker": {"metrics_port": None, "concurrency": 32}},
        controller={"interval_s": 1.0, "policy": {
            "stages": [{"name": "shadow", "weight_pct": 0}, {"name": "5%", "weight_pct": 5},
                       {"name": "25%", "weight_pct": 25}, {"name": "50%", "weight_pct": 50},
                       {"name": "100%", "weight_pct": 100}],
            "min_bake_s": 5, "min_pairs_per_stage": 60, "default_category": {"tolerance": tolerance}}},
    )


def _view(state: dict[str, Any], urls: dict[str, str]) -> Group:
    a = state.get("alias") or {}
    analysis: RolloutAnalysis | None = state.get("analysis")
    head = (f"[bold]support-bot[/]: stable [cyan]{a.get('stable')}[/], candidate [magenta]{a.get('candidate')}[/]"
            f"  phase [bold]{a.get('phase')}[/] stage {a.get('stage')} weight "
            f"[bold]{a.get('weight_bp', 0) / 100:g}%[/]   requests {state.get('requests', 0)}, judged "
            f"{state.get('judged', 0)}")
    if analysis is not None:
        head += f"\n[dim]controller: {analysis.decision}[/]"
    t = Table("category", "pairs", "win/tie/loss", "estimate", "anytime-valid interval", "next gate", "tolerance",
              "status", title="candidate minus stable, per capability (the controller's own analysis)")
    for cat, c in sorted(analysis.categories.items() if analysis else []):
        status = {"regressed": "[red]REGRESSED[/]", "gate met": "[green]gate met[/]"}.get(c.status,
                                                                                         "[yellow]collecting[/]")
        bar = _bar(c.lower, c.upper, -c.tolerance)
        t.add_row(cat, str(c.n), f"{c.wins}/{c.ties}/{c.losses}", f"{c.estimate:+.3f}",
                  f"[{c.lower:+.3f}, {c.upper:+.3f}] {bar}", f"> -{c.gate_margin:.3f}", f"-{c.tolerance}", status)
    events = Table("time", "event", "reason", title="events", show_lines=False)
    for e in state.get("events", [])[:6]:
        events.add_row(time.strftime("%H:%M:%S", time.localtime(e.get("ts", 0))), e["type"], str(e.get("reason") or ""))
    links = "  ".join(f"{k}: [link={v}]{v}[/]" for k, v in urls.items())
    return Group(Panel(head), t, events, links)


def describe(result: dict[str, Any]) -> str:
    """The decision in one line, with the numbers it was taken on."""
    if result["phase"] == "promoted":
        return "[bold green]promoted[/]: the candidate became stable"
    ev = next(e for e in result["events"] if e["type"] == "rolled_back")
    if ev.get("by") != "controller" or "category" not in ev:
        return f"[bold red]rolled back[/]: {ev.get('reason')}"
    s = ev["categories"][ev["category"]]
    served = (ev.get("exposure") or {}).get(ev["category"], 0)
    return (f"[bold red]rolled back[/]: {ev['reason']} - estimate {s['estimate']:+.3f}, interval "
            f"[{s['lower']:+.3f}, {s['upper']:+.3f}] after {s['n']} judged pairs (log e-value "
            f"{s['log_evalue']:.2f} >= threshold {s['threshold']:.2f}); the candidate had served {served} "
            f"{ev['category']} requests")


def _bar(lo: float, hi: float, tol: float, width: int = 24) -> str:
    """The interval on [-0.5, 0.5], with the tolerance line."""
    def pos(x: float) -> int:
        return min(max(int((x + 0.5) * width), 0), width - 1)
    cells = ["-"] * width
    for i in range(pos(lo), pos(hi) + 1):
        cells[i] = "="
    cells[pos(tol)] = "|"
    return "".join(cells)


async def run_demo(regress: dict[str, float], tolerance: float, rps: float, max_seconds: float,
                   console: Console, stay: bool = False) -> dict[str, Any]:
    taxonomy = Taxonomy.build()
    prompts = {ex: c.name for c in taxonomy.categories if c.name != OTHER for ex in c.examples}
    stable_q = {c: 0.7 for c in set(prompts.values())}
    cand_q = {c: 0.7 + regress.get(c, 0.0) for c in stable_q}
    ports = {k: _port() for k in ("stable", "cand", "judge", "gw")}
    data_dir = Path(tempfile.mkdtemp(prefix="cliffguard-demo-"))
    settings = demo_settings(data_dir, ports["gw"], f"http://127.0.0.1:{ports['stable']}/v1",
                             f"http://127.0.0.1:{ports['cand']}/v1", f"http://127.0.0.1:{ports['judge']}/v1",
                             tolerance)
    with console.status("preparing the classifier (the first run distils and fits it: about a minute; "
                         "cached in ~/.cache/cliffguard)"):
        await asyncio.to_thread(prepare, settings.classifier)
    console.print("[dim]starting the gateway (embedded Redis, classifier, controller) and the demo backends...[/]")
    logging.getLogger("cliffguard").setLevel(logging.ERROR)  # the live view is the output
    servers: Running = []
    try:
        _serve_in_thread(demo_backend("base-v1", prompts, stable_q, 1), ports["stable"], servers)
        _serve_in_thread(demo_backend("finetune-v2", prompts, cand_q, 2), ports["cand"], servers)
        _serve_in_thread(demo_judge(), ports["judge"], servers)
        app = create_app(settings)
        _serve_in_thread(app, ports["gw"], servers)
        return await _drive(app, settings, prompts, ports["gw"], rps, max_seconds, console, stay)
    finally:
        for server, _ in servers:  # the gateway's shutdown stops its embedded Redis
            server.should_exit = True
        deadline = time.monotonic() + 15  # one grace period for all: they stop together
        for _, thread in servers:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        shutil.rmtree(data_dir, ignore_errors=True)


async def _drive(app: Any, settings: Settings, prompts: dict[str, str], port: int, rps: float, max_seconds: float,
                 console: Console, stay: bool) -> dict[str, Any]:
    """Starts the rollout, sends traffic and shows the controller's view until it decides."""
    base = f"http://127.0.0.1:{port}"
    urls = {"console": f"{base}/console (admin token: {ADMIN_TOKEN})", "gateway": f"{base}/v1",
            "metrics": f"{base}/metrics"}
    assert app.ctx is not None and app.ctx.embedded is not None
    client = connect(app.ctx.embedded.url)  # our own client: the gateway's lives on its thread's loop
    prefix = settings.key_prefix
    store = StateStore(client, prefix)
    queue = JudgeQueue(client, prefix)
    state = LiveState(store)
    await state.start()
    worker = JudgeWorker(settings.judging, queue, state)
    worker_task = asyncio.create_task(worker.run())
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    result: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as h:
            r = await h.post("/admin/aliases/support-bot/rollout", headers=headers,
                             json={"candidate": "finetune-v2", "reason": "demo rollout"})
            r.raise_for_status()
            view: dict[str, Any] = {"requests": 0}
            items = list(prompts)
            rng = random.Random(7)
            stop_at = time.monotonic() + max_seconds

            senders_n = 4

            async def traffic() -> None:
                while True:
                    q = rng.choice(items)
                    body = {"model": "support-bot", "user": f"u{rng.randrange(500)}",
                            "messages": [{"role": "user", "content": q}]}
                    with contextlib.suppress(httpx.HTTPError):
                        await h.post("/v1/chat/completions", json=body)
                        view["requests"] += 1
                    await asyncio.sleep(senders_n / rps)

            senders = [asyncio.create_task(traffic()) for _ in range(senders_n)]
            with Live(_view(view, urls), console=console, refresh_per_second=4) as live:
                while time.monotonic() < stop_at:
                    await asyncio.sleep(0.5)
                    snap = await store.load()
                    alias = snap.aliases["support-bot"]
                    view["alias"] = alias.model_dump()
                    view["judged"] = worker.stats.judged
                    view["events"] = [e for e in await store.events(20) if e["type"] != "config_applied"]
                    stored = (await store.analyses()).get("support-bot")
                    if stored is not None:  # the controller removes it when the rollout ends: keep the last
                        view["analysis"] = RolloutAnalysis.model_validate_json(stored)
                    live.update(_view(view, urls))
                    if alias.phase in (Phase.ROLLED_BACK, Phase.PROMOTED):
                        result = {"phase": alias.phase.value, "events": view["events"]}
                        break
            for s in senders:
                s.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            if result:
                console.print(describe(result))
            if stay:
                console.print(f"[bold]the gateway stays up[/]: console {urls['console']}; Ctrl-C to stop")
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
    finally:
        worker.stop()
        await asyncio.gather(worker_task, return_exceptions=True)
        await worker.http.close()
        await state.stop()
        await client.aclose()
    return result
