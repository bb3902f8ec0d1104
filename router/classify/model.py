"""The embedding classifier: embedder plus head, fitted on the taxonomy's examples (cached under the
data dir) or loaded from an artifact written by `cliffguard classifier fit`."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from router.classify.embedder import Encoder
from router.classify.head import Head
from router.classify.taxonomy import Taxonomy

log = logging.getLogger("cliffguard.classifier")


class EmbeddingClassifier:
    def __init__(self, embedder: Encoder, head: Head) -> None:
        self.embedder = embedder
        self.head = head

    def classify(self, texts: list[str]) -> list[tuple[str, float]]:
        return self.head.predict(self.embedder.encode(texts))

    @classmethod
    def load(cls, taxonomy: Taxonomy, embedder: Encoder, artifact: Path | None,
             cache_dir: Path | None) -> EmbeddingClassifier:
        if artifact is not None:
            head = Head.load(artifact)
            if head.embedder != embedder.name:
                raise ValueError(f"classifier artifact {artifact} was fitted on {head.embedder} embeddings, "
                                 f"but the configured encoder is {embedder.name}")
            unknown = set(head.classes) - set(taxonomy.names)
            if unknown:
                raise ValueError(f"classifier artifact {artifact} predicts categories not in the taxonomy: "
                                 f"{sorted(unknown)}")
            return cls(embedder, head)
        texts, labels = taxonomy.training_set()
        key = hashlib.sha256(json.dumps([embedder.name, embedder.max_tokens, texts, labels]).encode()).hexdigest()
        cached = cache_dir / f"default-{key[:16]}.npz" if cache_dir else None
        if cached is not None and cached.exists():
            return cls(embedder, Head.load(cached))
        head = Head.fit(embedder.encode(texts), labels, embedder.name)
        if cached is not None:
            head.save(cached)
            log.info("fitted the taxonomy classifier on %d examples (cached in %s)", len(texts), cached)
        return cls(embedder, head)
