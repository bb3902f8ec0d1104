"""`cliffguard worker`: the judge worker as a process (Redis, live version state, metrics, progress)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from prometheus_client import start_http_server
from rich.console import Console

from gateway.config import Settings
from gateway.processes.embedded_redis import redis_url_for_tools
from judges.queue import JudgeQueue
from judges.worker import JudgeWorker
from router.live_state import LiveState
from router.store import StateStore, connect

out = Console(stderr=True)


async def _progress(worker: JudgeWorker, every_s: float) -> None:
    last, t_last = 0, time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):  # a metrics read must never stop the worker
            length, lag = await worker.export_queue_metrics()
            now = time.monotonic()
            rate = (worker.stats.judged - last) / (now - t_last)
            last, t_last = worker.stats.judged, now
            out.print(f"[dim]{time.strftime('%H:%M:%S')}[/] judged [bold]{worker.stats.judged}[/] "
                      f"({rate:.1f}/s)  queue {length}  lag {lag:.1f}s  retries {worker.stats.failed_attempts}  "
                      f"dead {worker.stats.dead}  duplicates {worker.stats.duplicates}", highlight=False)


async def run_worker(settings: Settings, progress_every_s: float = 5.0) -> None:
    cfg = settings.judging
    url = redis_url_for_tools(settings.redis_url, settings.data_dir)
    client = connect(url, timeout_s=5.0)
    store = StateStore(client, settings.key_prefix)
    state = LiveState(store, settings.state_refresh_s)
    await state.start()
    worker = JudgeWorker(cfg, JudgeQueue(client, settings.key_prefix, cfg.stream_maxlen), state)
    if cfg.worker.metrics_port is not None:
        start_http_server(cfg.worker.metrics_port, addr=settings.listen.host)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    out.print(f"[bold green]cliffguard worker[/] {worker.consumer}: judge {cfg.judge.model} at {cfg.judge.base_url}, "
              f"metrics on :{cfg.worker.metrics_port}", highlight=False)
    ticker = asyncio.create_task(_progress(worker, progress_every_s))
    try:
        await worker.run()
    finally:
        ticker.cancel()
        await worker.http.close()
        await state.stop()
        await client.aclose()
        out.print(f"worker stopped: judged {worker.stats.judged}, dead {worker.stats.dead}")
