"""The light model on top of the embeddings: multinomial logistic regression (scikit-learn), saved as
a small `.npz` artifact that the gateway loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Head:
    classes: tuple[str, ...]
    coef: np.ndarray  # (n_classes, dim)
    intercept: np.ndarray  # (n_classes,)
    embedder: str

    @classmethod
    def fit(cls, X: np.ndarray, labels: list[str], embedder: str, c: float = 16.0) -> Head:
        from sklearn.linear_model import LogisticRegression

        if len(set(labels)) < 2:
            raise ValueError("need examples of at least two categories")
        lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        lr.fit(X, labels)
        return cls(tuple(str(x) for x in lr.classes_), lr.coef_.astype(np.float32),
                   lr.intercept_.astype(np.float32), embedder)

    def proba(self, X: np.ndarray) -> np.ndarray:
        z = X @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(self, X: np.ndarray) -> list[tuple[str, float]]:
        p = self.proba(X)
        idx = p.argmax(axis=1)
        return [(self.classes[i], float(p[r, i])) for r, i in enumerate(idx)]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(f, classes=np.array(self.classes), coef=self.coef, intercept=self.intercept,
                     embedder=np.array(self.embedder))

    @classmethod
    def load(cls, path: Path) -> Head:
        with np.load(path, allow_pickle=False) as z:
            return cls(tuple(str(c) for c in z["classes"]), z["coef"], z["intercept"], str(z["embedder"]))
