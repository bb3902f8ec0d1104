"""Lexical features beside the embedding: the prompt's WordPiece tokens (the encoder's own tokenizer, so
they cost no second pass) and hashed token bigrams, with sublinear tf, idf and L2 norm. They catch
task words ("summarize", "regex", "in character") that a mean of token vectors dilutes in a long
prompt; misspelled words still share sub-word pieces with the right ones. Only the columns seen in
training are kept, so the weights stay small. Everything is vectorised numpy (no Python per token)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

BIGRAM_BITS = 20
MAX_TOKENS = 512  # per text: bounded work for pasted documents
_MIX = np.int64(1_000_003)


def _counts(ids: Sequence[Sequence[int]], vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, count) of every token and bigram, one row per text; columns [0, vocab) are
    tokens, the rest hashed bigrams. Sorted by row, then column."""
    cut = [s[:MAX_TOKENS] for s in ids]
    lens = np.fromiter(map(len, cut), np.int64, len(cut))
    tokens = np.fromiter(chain.from_iterable(cut), np.int64, int(lens.sum()))
    rows = np.repeat(np.arange(len(ids), dtype=np.int64), lens)
    within = rows[:-1] == rows[1:]  # bigrams never span two texts
    bigrams = vocab + (tokens[:-1][within] * _MIX + tokens[1:][within]) % (1 << BIGRAM_BITS)
    width = np.int64(vocab + (1 << BIGRAM_BITS))
    keys, counts = np.unique(np.concatenate([rows, rows[:-1][within]]) * width + np.concatenate([tokens, bigrams]),
                             return_counts=True)
    return keys // width, keys % width, counts.astype(np.float64)


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
        _, cols, _ = _counts(ids, vocab)
        kept, df = np.unique(cols, return_counts=True)
        kept, df = kept[df >= min_df], df[df >= min_df]
        idf = (np.log((1 + len(ids)) / (1 + df)) + 1).astype(np.float32)
        return cls(vocab, kept.astype(np.int64), idf)

    def entries(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, feature, value) of the non-zero features: sublinear tf times idf, L2-normalised per row."""
        rows, cols, counts = _counts(ids, self.vocab)
        if self.dim == 0:
            return rows[:0], rows[:0], counts[:0]
        pos = np.minimum(np.searchsorted(self.columns, cols), self.dim - 1)
        keep = self.columns[pos] == cols
        rows, pos = rows[keep], pos[keep]
        data = (1 + np.log(counts[keep])) * self.idf[pos]
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=len(ids)))
        return rows, pos, data / np.maximum(norms[rows], 1e-12)

    def logits(self, ids: Sequence[Sequence[int]], coef: np.ndarray) -> np.ndarray:
        """The features times `coef` (classes x dim), (texts x classes), with no sparse-matrix library
        in the serving process (scipy.sparse alone would add about 20 MB to every worker)."""
        rows, pos, data = self.entries(ids)
        out = np.zeros((len(ids), coef.shape[0]))
        if len(rows):  # rows come sorted: sum each text's run of entries
            starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
            out[rows[starts]] = np.add.reduceat(coef.T[pos] * data[:, None], starts, axis=0)
        return out

    def matrix(self, ids: Sequence[Sequence[int]]) -> Any:
        """The features as a scipy CSR matrix, for fitting."""
        from scipy import sparse

        rows, pos, data = self.entries(ids)
        return sparse.csr_matrix((data.astype(np.float32), (rows, pos)), shape=(len(ids), self.dim))
