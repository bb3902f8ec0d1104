"""WordPiece ids of ASCII text without the tokenizer's per-call work: the same ids, several times cheaper.

For ASCII, the BERT uncased pipeline (clean the text, lower-case it, split on whitespace and on every
punctuation character, then WordPiece each word) reduces to a regular expression and one WordPiece lookup
per distinct word, which is memoised. Prompts repeat their words, so after warm-up nearly every word is a
dict hit. Text with any non-ASCII character (accents to strip, CJK characters to split, other scripts) goes
to the real tokenizer: the rules there are not worth re-implementing. `tests/unit/test_ascii_tokens.py`
checks the ids against the tokenizer's on the whole training corpus.
"""

from __future__ import annotations

import re
from typing import Any

# BERT's clean_text drops control characters (tab, newline and carriage return are whitespace)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# a run of letters and digits is a word; every other printable ASCII character is punctuation, a word of its own
_PIECES = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")
MAX_WORDS = 200_000  # the memo's bound (about 30 MB when full); cleared when reached


class AsciiWordPiece:
    def __init__(self, tokenizer: Any) -> None:
        self._model = tokenizer.model  # the WordPiece model alone: no normaliser or pre-tokeniser
        self._words: dict[str, list[int]] = {}

    def ids(self, text: str, limit: int) -> list[int] | None:
        """The first `limit` ids of `text` as the tokenizer gives them (without special tokens), or None
        when `text` is not ASCII."""
        if not text.isascii():
            return None
        if _CONTROL.search(text):
            text = _CONTROL.sub("", text)
        words = self._words
        out: list[int] = []
        for word in _PIECES.findall(text.lower()):
            ids = words.get(word)
            if ids is None:
                ids = [t.id for t in self._model.tokenize(word)]
                if len(words) >= MAX_WORDS:
                    words.clear()
                words[word] = ids
            out += ids
            if len(out) >= limit:
                return out[:limit]
        return out
