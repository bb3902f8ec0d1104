"""`cliffguard controller`: the rollout controller as its own process."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server
from rich.console import Console

from gateway.config import Settings
from gateway.processes.embedded_redis import redis_url_for_tools
from judges.queue import JudgeQueue
from monitoring.controller import Controller
from monitoring.notify import Notifier
from router.classify import Taxonomy
from router.store import StateStore, connect

out = Console(stderr=True)


async def run_controller(settings: Settings, metrics_port: int | None = 9109) -> None:
    client = connect(redis_url_for_tools(settings.redis_url, settings.data_dir), timeout_s=5.0)
    store = StateStore(client, settings.key_prefix)
    notifier = Notifier(settings.controller.webhooks)
    categories = list(Taxonomy.build(settings.classifier.taxonomy).names)
    ctl = Controller(settings.controller, store, JudgeQueue(client, settings.key_prefix), categories, notifier)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=settings.listen.host)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, ctl.stop)
    out.print(f"[bold green]cliffguard controller[/] {ctl.instance}: evaluating every "
              f"{settings.controller.interval_s:g}s when leader; metrics on :{metrics_port}")
    try:
        await ctl.run()
    finally:
        await notifier.drain()
        await client.aclose()
