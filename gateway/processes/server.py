"""`cliffguard serve`: process wiring around uvicorn.

The parent process starts the embedded Redis (when no URL is configured) and prepares the Prometheus
multiprocess directory before the workers exist, so every worker shares both.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from pathlib import Path

from gateway.config import CONFIG_ENV, ENV_PREFIX, Settings
from gateway.processes.embedded_redis import EmbeddedRedis


def _metrics_dir(settings: Settings) -> Path:
    d = (settings.data_dir / "prometheus" / str(settings.listen.port)).resolve()
    shutil.rmtree(d, ignore_errors=True)  # stale files from a previous run would be summed in
    d.mkdir(parents=True)
    return d


def _prepare_classifier(settings: Settings) -> None:
    """Distill/fit once in a child process: the parent never holds torch, the workers only load files."""
    from gateway.classification import prepare

    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=prepare, args=(settings.classifier,), name="cliffguard-classifier-prepare")
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"classifier preparation failed (exit code {proc.exitcode}); see the log above")


def serve(settings: Settings, config_path: str | None, log_level: str = "info") -> None:
    # must precede any import of prometheus_client in this process (it picks its storage at import):
    # otherwise a single in-process worker would count in memory while /metrics reads the files
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before `serve` set PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir(settings))
    if config_path:
        os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    _prepare_classifier(settings)
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis((settings.data_dir / "redis").resolve())
        os.environ[f"{ENV_PREFIX}REDIS_URL"] = embedded.url  # the workers' settings pick it up
    import uvicorn

    from gateway.processes.http_protocol import GatewayHttpProtocol

    try:
        uvicorn.run(
            "gateway.app:create_app",
            factory=True,
            host=settings.listen.host,
            port=settings.listen.port,
            workers=settings.workers,
            loop="uvloop",
            http=GatewayHttpProtocol,  # OpenAI-format 400 for malformed HTTP
            lifespan="on",
            access_log=False,
            server_header=False,
            date_header=False,
            log_level=log_level,
            timeout_graceful_shutdown=30,
        )
    finally:
        if embedded:
            embedded.close()
