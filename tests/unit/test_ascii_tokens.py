"""The ASCII fast path gives exactly the tokenizer's WordPiece ids: on the whole training corpus and on
the cases its rules must get right (control characters, punctuation, long words, the id limit)."""

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from router.classify.ascii_tokens import AsciiWordPiece
from router.classify.corpus import corpus
from router.classify.embedder import default_model_path
from router.classify.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def texts() -> list[str]:
    out = [content for ex in corpus(frozenset(Taxonomy.build().names)) for _, content in ex.messages]
    for f in sorted((REPO / "bench/data").glob("classifier_*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            out += [row["prompt"]] if "prompt" in row else [m["content"] for m in row["messages"]]
    return out + [
        "", "   ", "a\tb\nc\r\nd", "bell\x07 and\x00 null\x1f and del\x7f", "x" * 150 + " y", "don't stop!!!",
        "see https://example.com/a_b?c=1&d=2#frag", "snake_case and CamelCase and 3.14e-10 and $5,000.00",
        "SELECT * FROM t WHERE a<>b AND c~'x'; -- {json: [1,2]} `code` ^caret| \\back", "ALL CAPS SHOUTING",
        "word" * 40, "unaffable unbelievably antidisestablishmentarianism", "1234567890123",
    ]


def test_same_ids_as_the_tokenizer_on_every_ascii_text(tokenizer):
    fast = AsciiWordPiece(tokenizer)
    ascii_texts = [t for t in texts() if t.isascii()]
    assert len(ascii_texts) > 5000
    for t in ascii_texts:
        expected = tokenizer.encode(t, add_special_tokens=False).ids
        assert fast.ids(t, 10_000) == expected, t[:200]
        assert fast.ids(t, 7) == expected[:7]


def test_non_ascii_text_is_left_to_the_tokenizer(tokenizer):
    fast = AsciiWordPiece(tokenizer)
    assert fast.ids("café crème", 512) is None and fast.ids("你好", 512) is None
