"""`cliffguard serve`: process wiring around uvicorn.

The parent process prepares the classifier (in a child), makes sure there is an admin token, prepares
the Prometheus multiprocess directory and starts the embedded Redis (when no URL is configured) before
the workers exist, so every worker shares them. With several workers it starts the classifier process
that serves them all (`classifier_host.py`). It then runs the workers under a supervisor that replaces
dead ones (and a dead classifier process) and forgets their live gauges.

SIGTERM (what Docker, systemd and Kubernetes send) and SIGINT stop it the same way: the workers stop
accepting, finish the requests in flight, streams included, within SHUTDOWN_GRACE_S, then the embedded
Redis is shut down (saving its data), and its socket link and the metrics files are removed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.config import CONFIG_ENV, ENV_PREFIX, ClassifierConfig, Settings
from gateway.processes.admin_token import ensure_admin_token
from gateway.processes.embedded_redis import EmbeddedRedis

SHUTDOWN_GRACE_S = 30  # Kubernetes waits 30 s by default before SIGKILL: the manifests give it 45
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_dir(settings: Settings) -> Path:
    d = (settings.data_dir / "prometheus" / str(settings.listen.port)).resolve()
    shutil.rmtree(d, ignore_errors=True)  # stale files from a previous run would be summed in
    d.mkdir(parents=True)
    return d


def _prepare_in_child(cfg: ClassifierConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent decides
    from gateway.classification import prepare

    prepare(cfg)


def _prepare_classifier(settings: Settings) -> None:
    """Distill/fit once in a child process: the parent never holds torch, the workers only load files."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_prepare_in_child, args=(settings.classifier,), name="cliffguard-classifier-prepare")
    proc.start()
    try:
        proc.join()
    finally:
        if proc.is_alive():  # stopped while preparing
            proc.terminate()
            proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"classifier preparation failed (exit code {proc.exitcode}); see the log above")


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """A stop signal arriving in here is handled on leaving: the embedded Redis is never half-started."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def unwind_on_stop_signals() -> None:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so every `finally` runs (SIGTERM's default action
    would skip the cleanup), even where the process was started with SIGINT ignored (`nohup cmd &`)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)


def serve(settings: Settings, config_path: str | None, log_level: str = "info") -> None:
    # must precede any import of prometheus_client in this process (it picks its storage at import):
    # otherwise a single in-process worker would count in memory while /metrics reads the files
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before `serve` set PROMETHEUS_MULTIPROC_DIR")
    # uvicorn re-raises the signal that stopped a single in-process worker: it must unwind, not kill
    unwind_on_stop_signals()
    os.environ.pop(_MULTIPROC_ENV, None)  # the classifier's preparation child keeps its metrics to itself
    if config_path:
        os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    embedded: EmbeddedRedis | None = None
    metrics_dir: Path | None = None
    try:
        _prepare_classifier(settings)
        os.environ.update(ensure_admin_token(settings, _say))
        with _signals_deferred():
            metrics_dir = _metrics_dir(settings)
            os.environ[_MULTIPROC_ENV] = str(metrics_dir)
            if not settings.redis_url:
                embedded = EmbeddedRedis((settings.data_dir / "redis").resolve())
                os.environ[f"{ENV_PREFIX}REDIS_URL"] = embedded.url  # the workers' settings pick it up
        _run_workers(settings, log_level, metrics_dir)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in _STOP_SIGNALS:  # stopping already: a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        if embedded:
            embedded.close()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_workers(settings: Settings, log_level: str, metrics_dir: Path) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from gateway.processes.classifier_host import SOCKET_ENV, ClassifierHost
    from gateway.processes.http_protocol import GatewayHttpProtocol
    from gateway.processes.supervisor import Supervisor

    config = uvicorn.Config(
        "gateway.app:create_app",
        factory=True,
        host=settings.listen.host,
        port=settings.listen.port,
        workers=settings.workers,
        loop="uvloop",
        http=GatewayHttpProtocol,  # OpenAI-format 400 for malformed HTTP
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing reads the client's address: no middleware per request for it
        server_header=False,
        date_header=False,
        log_level=log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    if settings.workers > 1:
        host = ClassifierHost(settings.classifier) if settings.classifier.enabled else None
        try:
            if host:
                host.start()
                os.environ[SOCKET_ENV] = host.path  # the workers link to it instead of loading the model
            Supervisor(config, metrics_dir, host).run()
        finally:
            if host:
                host.stop()  # after the workers: the requests they finished while draining were labelled
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
