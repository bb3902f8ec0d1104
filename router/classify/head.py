"""The model on top of the features: multinomial logistic regression over [sentence embedding, lexical
n-grams], a temperature that calibrates its probabilities, and the conversation gate's weights
(`conversation.py`). Saved as a small `.npz` artifact that the gateway loads; fitted by `training.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router.classify.conversation import DEFAULT_GATE
from router.classify.features import LexicalFeatures

FORMAT = 3  # 1: embedding-only heads written before lexical features; 2: a one-row gate; both still loaded


@dataclass(frozen=True)
class Head:
    classes: tuple[str, ...]
    coef: np.ndarray  # (n_classes, dim): the embedding block
    intercept: np.ndarray  # (n_classes,)
    embedder: str
    lexical: LexicalFeatures | None = None
    lex_coef: np.ndarray | None = None  # (n_classes, lexical.dim)
    temperature: float = 1.0
    # conversation.gate_matrix: (2, gate_width), or an older shape it widens
    gate: np.ndarray = field(default_factory=lambda: DEFAULT_GATE.copy())
    sharpen: float = 1.0  # calibration of the folded state of requests with more than one part

    def logits(self, emb: np.ndarray, ids: Sequence[Sequence[int]]) -> np.ndarray:
        z: np.ndarray = emb @ self.coef.T + self.intercept
        if self.lexical is not None and self.lex_coef is not None:
            z += self.lexical.logits(ids, self.lex_coef)
        return z

    def proba(self, emb: np.ndarray, ids: Sequence[Sequence[int]]) -> np.ndarray:
        return softmax(self.logits(emb, ids) / self.temperature)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lex: dict[str, Any] = {} if self.lexical is None or self.lex_coef is None else {
            "lex_vocab": np.array(self.lexical.vocab), "lex_columns": self.lexical.columns, "lex_idf": self.lexical.idf,
            "lex_coef": self.lex_coef}
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, format=np.array(FORMAT), classes=np.array(self.classes), coef=self.coef,
                     intercept=self.intercept, embedder=np.array(self.embedder),
                     temperature=np.array(self.temperature), gate=self.gate, sharpen=np.array(self.sharpen), **lex)
        tmp.replace(path)  # atomic: concurrent readers never see half a file

    @classmethod
    def load(cls, path: Path) -> Head:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            lexical = (LexicalFeatures(int(z["lex_vocab"]), z["lex_columns"], z["lex_idf"])
                       if "lex_columns" in keys else None)
            return cls(tuple(str(c) for c in z["classes"]), z["coef"], z["intercept"], str(z["embedder"]),
                       lexical, z["lex_coef"] if lexical is not None else None,
                       float(z["temperature"]) if "temperature" in keys else 1.0,
                       z["gate"] if "gate" in keys else DEFAULT_GATE.copy(),
                       float(z["sharpen"]) if "sharpen" in keys else 1.0)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def features(emb: np.ndarray, lexical: LexicalFeatures, ids: Sequence[Sequence[int]]) -> Any:
    """The design matrix the logistic regression is fitted on: [embedding, lexical] (scipy CSR)."""
    from scipy import sparse

    return sparse.hstack([sparse.csr_matrix(emb.astype(np.float32)), lexical.matrix(ids)], format="csr")
