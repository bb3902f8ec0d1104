"""The static encoder's token table: widened to float32 once from the distilled float16 cache, memory-mapped
(the workers of a host share its pages), and a prompt's embedding is the normalised mean of its rows."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from router.classify.embedder import StaticEmbedder, default_cache_dir


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A cache holding only the distilled float16 table(s), as an install before the float32 copy had."""
    found = [p for p in default_cache_dir().glob("static-*.npy") if not p.name.endswith("-f32.npy")]
    if not found:
        pytest.skip("no distilled table cached (scripts/test.sh prepares it)")
    for f in found:
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_the_float16_cache_is_widened_once_and_memory_mapped(cache):
    enc = StaticEmbedder(cache_dir=cache)
    wide = sorted(cache.glob("static-*-f32.npy"))
    assert len(wide) == 1
    narrow = np.load(str(wide[0]).replace("-f32.npy", ".npy"))
    # a plain array over the mapping (a np.memmap costs a Python call per lookup)
    assert type(enc.table) is np.ndarray and isinstance(enc.table.base, np.memmap)
    assert enc.table.dtype == np.float32
    assert np.array_equal(enc.table, narrow.astype(np.float32))  # float16 widens exactly
    stamp = wide[0].stat().st_mtime_ns
    StaticEmbedder(cache_dir=cache)
    assert wide[0].stat().st_mtime_ns == stamp  # reused, not rewritten


def test_an_embedding_is_the_normalised_mean_of_its_token_rows(cache):
    enc = StaticEmbedder(cache_dir=cache)
    texts = ["Summarize this article in three bullet points.", "", "x " * 400]
    emb, ids = enc.encode_with_ids(texts)
    for row, seq in zip(emb, ids, strict=True):
        cut = seq[:enc.max_tokens] or [enc.unk]
        mean = np.asarray(enc.table[cut], np.float64).mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), rtol=0, atol=1e-5)
    assert len(ids[2]) > enc.max_tokens  # the lexical features read further than the mean


def test_a_cache_it_cannot_write_to_gives_a_private_float32_table(cache, caplog):
    for f in list(cache.glob("static-*.npy")):
        # a directory where the float32 copy's temporary file goes: the write fails, as on a read-only cache
        (cache / f.name.replace(".npy", f"-f32.{os.getpid()}.tmp.npy")).mkdir()
    enc = StaticEmbedder(cache_dir=cache)
    assert not isinstance(enc.table.base, np.memmap) and enc.table.dtype == np.float32
    assert not list(cache.glob("static-*-f32.npy"))
    assert "widening the token table in memory" in caplog.text
    assert enc.encode(["hello world"]).shape == (1, enc.table.shape[1])
