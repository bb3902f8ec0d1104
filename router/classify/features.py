"""Lexical features beside the embedding: the prompt's WordPiece tokens (the encoder's own tokenizer, so
they cost no second pass) and hashed token bigrams, with sublinear tf, idf and L2 norm. They catch
task words ("summarize", "regex", "in character") that a mean of token vectors dilutes in a long
prompt; misspelled words still share sub-word pieces with the right ones. Only the columns seen in
training are kept, so the weights stay small. Everything is vectorised numpy (no Python per token)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

BIGRAM_BITS = 20
MAX_TOKENS = 512  # per text: bounded work for pasted documents
_MIX = np.int64(1_000_003)


def _counts(ids: Sequence[Sequence[int]], vocab: int) -> sparse.csr_matrix:
    """Token and bigram counts, one row per text; columns [0, vocab) are tokens, the rest bigrams."""
    rows, cols = [], []
    for r, seq in enumerate(ids):
        t = np.asarray(seq[:MAX_TOKENS], dtype=np.int64)
        bigrams = vocab + (t[:-1] * _MIX + t[1:]) % (1 << BIGRAM_BITS)
        c = np.concatenate([t, bigrams])
        cols.append(c)
        rows.append(np.full(c.shape[0], r, dtype=np.int64))
    data_cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    data_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    x = sparse.csr_matrix((np.ones(data_cols.shape[0], np.float32), (data_rows, data_cols)),
                          shape=(len(ids), vocab + (1 << BIGRAM_BITS)), dtype=np.float32)
    x.sum_duplicates()
    return x


@dataclass(frozen=True)
class LexicalFeatures:
    vocab: int  # the tokenizer's vocabulary size
    columns: np.ndarray  # int64, sorted: the token and bigram columns kept
    idf: np.ndarray  # float32, one per kept column

    @property
    def dim(self) -> int:
        return int(self.columns.shape[0])

    @classmethod
    def fit(cls, ids: Sequence[Sequence[int]], vocab: int, min_df: int = 2) -> LexicalFeatures:
        x = _counts(ids, vocab)
        df = np.bincount(x.indices, minlength=x.shape[1])
        columns = np.flatnonzero(df >= min_df)
        idf = (np.log((1 + len(ids)) / (1 + df[columns])) + 1).astype(np.float32)
        return cls(vocab, columns.astype(np.int64), idf)

    def transform(self, ids: Sequence[Sequence[int]]) -> sparse.csr_matrix:
        x = _counts(ids, self.vocab)
        if self.dim == 0:
            return sparse.csr_matrix((x.shape[0], 0), dtype=np.float32)
        pos = np.minimum(np.searchsorted(self.columns, x.indices), self.dim - 1)
        keep = self.columns[pos] == x.indices
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[keep]
        data = (1 + np.log(x.data[keep])) * self.idf[pos[keep]]  # sublinear tf, idf
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=x.shape[0]))
        data = data / np.maximum(norms[rows], 1e-12)
        return sparse.csr_matrix((data.astype(np.float32), (rows, pos[keep])), shape=(x.shape[0], self.dim))
