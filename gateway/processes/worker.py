"""`cliffguard worker`: the judge worker as a process (Redis, live version state, metrics, progress)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import time

import aiohttp
from prometheus_client import start_http_server
from rich.console import Console

from gateway.config import Settings
from gateway.processes.embedded_redis import redis_url_for_tools
from judges.queue import JudgeQueue
from judges.worker import JudgeWorker
from router.live_state import LiveState
from router.store import StateStore, connect

out = Console(stderr=True)


async def judge_unreachable(base_url: str, timeout_s: float = 3.0) -> str | None:
    """Why the judge cannot be reached, or None. Any HTTP answer counts as reachable (a 401 or 404 on
    `/models` still means the server is there); only a refused connection or a timeout does not."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http, \
                http.get(base_url.rstrip("/") + "/models"):
            return None
    except (aiohttp.ClientError, TimeoutError) as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


async def _progress(worker: JudgeWorker, judge_url: str, every_s: float) -> None:
    """A status line every `every_s`, with a loud line while the judge cannot be reached: without it
    nothing is judged and rollouts end inconclusive."""
    last, t_last = 0, time.monotonic()
    while True:
        if (why := await judge_unreachable(judge_url)) is not None:
            out.print(f"[bold red]judge unreachable[/] at {judge_url} ({why}): samples wait in the queue and "
                      "nothing is judged until it answers", highlight=False)
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):  # a metrics read must never stop the worker
            length, lag = await worker.export_queue_metrics()
            now = time.monotonic()
            rate = (worker.stats.judged - last) / (now - t_last)
            last, t_last = worker.stats.judged, now
            out.print(f"[dim]{time.strftime('%H:%M:%S')}[/] judged [bold]{worker.stats.judged}[/] "
                      f"({rate:.1f}/s)  queue {length}  lag {lag:.1f}s  retries {worker.stats.failed_attempts}  "
                      f"dead {worker.stats.dead}  duplicates {worker.stats.duplicates}", highlight=False)


PORTS_TRIED = 16  # the configured port and the next ones, then any free port


def serve_metrics(port: int, host: str) -> int:
    """Start the metrics endpoint on `port`, or, when another process on this host (a second worker) holds
    it, on the next free one: several workers per host must not crash on their shared config."""
    for p in range(port, port + PORTS_TRIED):
        try:
            start_http_server(p, addr=host)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            continue
        if p != port:
            out.print(f"[yellow]metrics port {port} is in use (another worker on this host?): using {p}[/]",
                      highlight=False)
        return p
    server, _ = start_http_server(0, addr=host)
    chosen = int(server.server_port)
    out.print(f"[yellow]metrics ports {port}-{port + PORTS_TRIED - 1} are in use: using {chosen}[/]", highlight=False)
    return chosen


async def run_worker(settings: Settings, progress_every_s: float = 5.0) -> None:
    cfg = settings.judging
    url = redis_url_for_tools(settings.redis_url, settings.data_dir)
    client = connect(url, timeout_s=5.0)
    store = StateStore(client, settings.key_prefix)
    state = LiveState(store, settings.state_refresh_s)
    await state.start()
    worker = JudgeWorker(cfg, JudgeQueue(client, settings.key_prefix, cfg.stream_maxlen), state)
    metrics_port = None if cfg.worker.metrics_port is None else serve_metrics(cfg.worker.metrics_port,
                                                                            settings.listen.host)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    metrics = f"metrics on :{metrics_port}" if metrics_port else "metrics off"
    out.print(f"[bold green]cliffguard worker[/] {worker.consumer}: judge {cfg.judge.model} at {cfg.judge.base_url}, "
              f"{metrics}", highlight=False)
    ticker = asyncio.create_task(_progress(worker, cfg.judge.base_url, progress_every_s))
    try:
        await worker.run()
    finally:
        ticker.cancel()
        await worker.http.close()
        await state.stop()
        await client.aclose()
        out.print(f"worker stopped: judged {worker.stats.judged}, dead {worker.stats.dead}")
