"""The embedding classifier: encoder plus head, fitted on the taxonomy's training set (cached under the
cache dir, keyed by a hash of the data) or loaded from an artifact written by `cliffguard classifier fit`.

A request is a tuple of parts (`prompt.PromptParts.model_parts`). Each part's probabilities are
memoised by a digest of its text, so a conversation's earlier turns, already classified on the
previous request, cost nothing: only the new turn is encoded. The memo is a pure cache (the same parts
give the same label whether or not it is warm), used only by the thread that calls `classify`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

from router.classify.conversation import FOLLOW_UP, Batch, Slots, fold, sharpen
from router.classify.embedder import Encoder
from router.classify.head import Head
from router.classify.taxonomy import Taxonomy

log = logging.getLogger("cliffguard.classifier")
HEAD_CACHE_VERSION = "head-v8"  # bump when the fitted head's meaning or file format changes


class EmbeddingClassifier:
    def __init__(self, embedder: Encoder, head: Head, memo_size: int = 20_000) -> None:
        self.embedder = embedder
        self.head = head
        self._slots = Slots.of(head.classes)
        self._memo: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._memo_size = memo_size
        self._empty = np.zeros(len(head.classes))

    def part_proba(self, parts: list[str]) -> list[np.ndarray]:
        """Calibrated probabilities of each text on its own (memoised)."""
        keys = [hashlib.blake2b(p.encode(), digest_size=16).digest() for p in parts]
        missing = list({k: p for k, p in zip(keys, parts, strict=True) if k not in self._memo and p}.items())
        if missing:
            emb, ids = self.embedder.encode_with_ids([p for _, p in missing])
            probs = self.head.proba(emb, ids)
            for (k, _), row in zip(missing, probs, strict=True):
                self._memo[k] = row
        out = []
        for k, p in zip(keys, parts, strict=True):
            if not p:  # an empty part (no system prompt): masked out by the fold
                out.append(self._empty)
                continue
            self._memo.move_to_end(k)
            out.append(self._memo[k])
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return out

    def proba(self, requests: list[tuple[str, ...]]) -> np.ndarray:
        """One row of conversation probabilities per request (parts folded by the gate)."""
        flat = self.part_proba([p for parts in requests for p in parts])
        probs, i = [], 0
        for parts in requests:
            probs.append(flat[i:i + len(parts)])
            i += len(parts)
        state = fold(Batch.of(requests, probs, len(self.head.classes)), self.head.gate, self._slots)
        multi = np.array([sum(1 for p in parts if p) > 1 for parts in requests])
        if multi.any() and self.head.sharpen != 1.0:
            state[multi] = sharpen(state[multi], self.head.sharpen)
        return state

    def classify(self, requests: list[tuple[str, ...]]) -> list[tuple[str, float]]:
        p = self.proba(requests)
        idx = p.argmax(axis=1)
        return [(self.head.classes[i], float(p[r, i])) for r, i in enumerate(idx)]

    @classmethod
    def load(cls, taxonomy: Taxonomy, embedder: Encoder, artifact: Path | None,
             cache_dir: Path | None) -> EmbeddingClassifier:
        if artifact is not None:
            head = Head.load(artifact)
            if head.embedder != embedder.name:
                raise ValueError(f"classifier artifact {artifact} was fitted on {head.embedder} embeddings, "
                                 f"but the configured encoder is {embedder.name}")
            unknown = set(head.classes) - set(taxonomy.names) - {FOLLOW_UP}
            if unknown:
                raise ValueError(f"classifier artifact {artifact} predicts categories not in the taxonomy: "
                                 f"{sorted(unknown)}")
            return cls(embedder, head)
        examples = taxonomy.training_set()
        blob = json.dumps([HEAD_CACHE_VERSION, embedder.name, embedder.max_tokens,
                           [(e.messages, e.category, e.group) for e in examples]])
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        cached = cache_dir / f"{HEAD_CACHE_VERSION}-{key}.npz" if cache_dir else None
        if cached is not None and cached.exists():
            return cls(embedder, Head.load(cached))
        log.info("fitting the taxonomy classifier on %d examples (once; about a minute)", len(examples))
        from router.classify import training  # scipy and scikit-learn: only where a head is fitted

        head = training.fit(examples, embedder, progress=log.info)
        if cached is not None:
            head.save(cached)
            log.info("classifier head cached in %s", cached)
        return cls(embedder, head)
