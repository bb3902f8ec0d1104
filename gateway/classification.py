"""Building the request classifier for a gateway process (model load, service start, metrics): the model
in a thread of this process, or, under `cliffguard serve` with several workers, a link to the host's
classifier process (`gateway/processes/classifier_host.py`)."""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

from gateway.config import ClassifierConfig
from gateway.processes.classifier_host import SOCKET_ENV
from gateway.processes.classifier_link import RemoteClassifier
from monitoring import metrics as m
from router.classify import RequestClassifier, Taxonomy
from router.classify.embedder import Encoder, default_cache_dir, make_encoder
from router.classify.model import EmbeddingClassifier
from router.classify.service import ClassifierService

log = logging.getLogger("cliffguard.classifier")
CONNECT_WAIT_S = 5.0  # the process listens before the workers start: this only bounds a worker's startup


def cache_dir(cfg: ClassifierConfig) -> Path:
    return cfg.cache_dir or default_cache_dir()


@cache
def _encoder(kind: str, model_path: str | None, max_tokens: int, threads: int, cache: Path) -> Encoder:
    return make_encoder(kind, model_path, max_tokens, threads, cache)


def shared_encoder(cfg: ClassifierConfig) -> Encoder:
    """One model per process, however many apps it hosts (tests run several)."""
    return _encoder(cfg.encoder, cfg.model_path, cfg.max_tokens, cfg.threads, cache_dir(cfg))


def observe_batch(size: int, seconds: float) -> None:
    m.CLASSIFIER_BATCH_SIZE.observe(size)
    m.CLASSIFIER_BATCH_SECONDS.observe(seconds)


def load_model(cfg: ClassifierConfig, artifact: Path | None = None) -> tuple[Taxonomy, EmbeddingClassifier]:
    taxonomy = Taxonomy.build(cfg.taxonomy)
    return taxonomy, EmbeddingClassifier.load(taxonomy, shared_encoder(cfg), artifact or cfg.artifact, cache_dir(cfg))


def prepare(cfg: ClassifierConfig) -> None:
    """Build the cached table and head before the workers start (so they do not all distill at once)."""
    if cfg.enabled:
        load_model(cfg)


async def build_classifier(cfg: ClassifierConfig) -> RequestClassifier:
    if not cfg.enabled:
        return RequestClassifier(Taxonomy.build(cfg.taxonomy), None)
    path = os.environ.get(SOCKET_ENV)
    if path:
        remote = RemoteClassifier(path, queue_size=cfg.queue_size, cache_size=cfg.cache_size)
        remote.start()
        if not await remote.wait_connected(CONNECT_WAIT_S):
            log.warning("classifier process not reachable at %s yet; labelling unclassified until it is", path)
        return RequestClassifier(Taxonomy.build(cfg.taxonomy), remote)
    taxonomy, model = load_model(cfg)
    embedder = model.embedder
    service = ClassifierService(
        model.classify, min_confidence=cfg.min_confidence, batch_size=cfg.batch_size,
        batch_wait_s=cfg.batch_wait_ms / 1000, queue_size=cfg.queue_size, cache_size=cfg.cache_size,
        on_batch=observe_batch,
    )
    service.start()
    log.info("classifier ready: %s, categories %s", embedder.name, ", ".join(taxonomy.names))
    return RequestClassifier(taxonomy, service)
