"""Building the request classifier for a gateway process (model load, service start, metrics)."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from gateway.config import ClassifierConfig
from monitoring import metrics as m
from router.classify import RequestClassifier, Taxonomy
from router.classify.embedder import Embedder
from router.classify.model import EmbeddingClassifier
from router.classify.service import ClassifierService

log = logging.getLogger("cliffguard.classifier")


@cache
def shared_embedder(model_path: str | None, max_tokens: int, threads: int) -> Embedder:
    """One model per process, however many apps it hosts (tests run several)."""
    return Embedder(model_path, max_tokens, threads)


def _observe_batch(size: int, seconds: float) -> None:
    m.CLASSIFIER_BATCH_SIZE.observe(size)
    m.CLASSIFIER_BATCH_SECONDS.observe(seconds)


def build_classifier(cfg: ClassifierConfig, data_dir: Path) -> RequestClassifier:
    taxonomy = Taxonomy.build(cfg.taxonomy)
    if not cfg.enabled:
        return RequestClassifier(taxonomy, None)
    embedder = shared_embedder(cfg.model_path, cfg.max_tokens, cfg.threads)
    model = EmbeddingClassifier.load(taxonomy, embedder, cfg.artifact, cfg.cache_dir or data_dir / "classifier")
    service = ClassifierService(
        model.classify, min_confidence=cfg.min_confidence, batch_size=cfg.batch_size,
        batch_wait_s=cfg.batch_wait_ms / 1000, queue_size=cfg.queue_size, cache_size=cfg.cache_size,
        on_batch=_observe_batch,
    )
    service.start()
    log.info("classifier ready: %s, categories %s", embedder.name, ", ".join(taxonomy.names))
    return RequestClassifier(taxonomy, service)
