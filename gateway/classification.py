"""Building the request classifier for a gateway process (model load, service start, metrics)."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from gateway.config import ClassifierConfig
from monitoring import metrics as m
from router.classify import RequestClassifier, Taxonomy
from router.classify.embedder import Encoder, default_cache_dir, make_encoder
from router.classify.model import EmbeddingClassifier
from router.classify.service import ClassifierService

log = logging.getLogger("cliffguard.classifier")


def cache_dir(cfg: ClassifierConfig) -> Path:
    return cfg.cache_dir or default_cache_dir()


@cache
def _encoder(kind: str, model_path: str | None, max_tokens: int, threads: int, cache: Path) -> Encoder:
    return make_encoder(kind, model_path, max_tokens, threads, cache)


def shared_encoder(cfg: ClassifierConfig) -> Encoder:
    """One model per process, however many apps it hosts (tests run several)."""
    return _encoder(cfg.encoder, cfg.model_path, cfg.max_tokens, cfg.threads, cache_dir(cfg))


def _observe_batch(size: int, seconds: float) -> None:
    m.CLASSIFIER_BATCH_SIZE.observe(size)
    m.CLASSIFIER_BATCH_SECONDS.observe(seconds)


def load_model(cfg: ClassifierConfig, artifact: Path | None = None) -> tuple[Taxonomy, EmbeddingClassifier]:
    taxonomy = Taxonomy.build(cfg.taxonomy)
    return taxonomy, EmbeddingClassifier.load(taxonomy, shared_encoder(cfg), artifact or cfg.artifact, cache_dir(cfg))


def prepare(cfg: ClassifierConfig) -> None:
    """Build the cached table and head before the workers start (so they do not all distill at once)."""
    if cfg.enabled:
        load_model(cfg)


def build_classifier(cfg: ClassifierConfig) -> RequestClassifier:
    if not cfg.enabled:
        return RequestClassifier(Taxonomy.build(cfg.taxonomy), None)
    taxonomy, model = load_model(cfg)
    embedder = model.embedder
    service = ClassifierService(
        model.classify, min_confidence=cfg.min_confidence, batch_size=cfg.batch_size,
        batch_wait_s=cfg.batch_wait_ms / 1000, queue_size=cfg.queue_size, cache_size=cfg.cache_size,
        on_batch=_observe_batch,
    )
    service.start()
    log.info("classifier ready: %s, categories %s", embedder.name, ", ".join(taxonomy.names))
    return RequestClassifier(taxonomy, service)
