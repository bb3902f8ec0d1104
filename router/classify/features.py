"""Lexical features beside the embedding: hashed word 1-2-grams and character 3-5-grams (scikit-learn's
HashingVectorizer), with sublinear tf, idf and L2 norm per block. Character n-grams make the classifier
robust to misspellings; word n-grams catch task words ("summarize", "regex", "in character") that a
mean of token vectors dilutes in a long prompt. Only the hashed columns seen in training are kept, so
the weights stay small."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

WORD_BITS = 18
CHAR_BITS = 19
MAX_CHARS = 4000  # n-grams of the first 4,000 characters: bounded work for pasted documents


def _vectorizers() -> tuple[object, object]:
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"alternate_sign": False, "norm": None, "lowercase": True, "dtype": np.float32}
    word = HashingVectorizer(ngram_range=(1, 2), n_features=2**WORD_BITS, token_pattern=r"(?u)\b\w+\b", **common)
    char = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**CHAR_BITS, **common)
    return word, char


def _counts(texts: list[str]) -> sparse.csr_matrix:
    word, char = _vectorizers()
    clipped = [t[:MAX_CHARS] for t in texts]
    w = word.transform(clipped)  # type: ignore[attr-defined]
    c = char.transform(clipped)  # type: ignore[attr-defined]
    return sparse.hstack([w, c], format="csr", dtype=np.float32)


@dataclass(frozen=True)
class LexicalFeatures:
    columns: np.ndarray  # int64: the hashed columns kept (word block first, then char block offset)
    idf: np.ndarray  # float32, one per kept column

    @property
    def dim(self) -> int:
        return int(self.columns.shape[0])

    @classmethod
    def fit(cls, texts: list[str], min_df: int = 2) -> LexicalFeatures:
        x = _counts(texts)
        df = np.bincount(x.indices, minlength=x.shape[1])
        columns = np.flatnonzero(df >= min_df)
        idf = (np.log((1 + len(texts)) / (1 + df[columns])) + 1).astype(np.float32)
        return cls(columns.astype(np.int64), idf)

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        x = _counts(texts)
        lookup = self._lookup()
        idx = lookup[x.indices]
        keep = idx >= 0
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[keep]
        data = (1 + np.log(x.data[keep])) * self.idf[idx[keep]]  # sublinear tf, idf
        out = sparse.csr_matrix((data, (rows, idx[keep])), shape=(x.shape[0], self.dim), dtype=np.float32)
        word_cols = int(np.searchsorted(self.columns, 2**WORD_BITS))
        return sparse.hstack([_l2(out[:, :word_cols]), _l2(out[:, word_cols:])], format="csr")

    def _lookup(self) -> np.ndarray:
        cached: np.ndarray | None = self.__dict__.get("_lookup_table")
        if cached is None:
            cached = np.full(2**WORD_BITS + 2**CHAR_BITS, -1, dtype=np.int32)
            cached[self.columns] = np.arange(self.dim, dtype=np.int32)
            object.__setattr__(self, "_lookup_table", cached)
        return cached


def _l2(x: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sparse.csr_matrix(sparse.diags(1 / norms) @ x)
