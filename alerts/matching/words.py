"""An article's words, folded the way readers' keywords are, to find whole words and phrases."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from alerts.models import Article

# Han ideographs (with the extensions and compatibility blocks), kana and Hangul syllables:
# scripts written without spaces, so each character is a word of its own.
_IDEOGRAPH = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
_WORD = re.compile(f"[{_IDEOGRAPH}]|[^\\W{_IDEOGRAPH}]+")
# Arabic letters written several ways: alef wasla and alef maqsura, and the tatweel
# (a stretch, not a letter). Hamza and madda on alef, waw and yeh go with the diacritics.
_ARABIC = str.maketrans({"\u0671": "\u0627", "\u0649": "\u064a", "\u0640": None})


def words(text: str) -> list[str]:
    """Text folded to its words: lower case, accents and punctuation gone ("ICANN's" ->
    ["icann", "s"], "Propriété" -> ["propriete"]).

    Arabic loses its diacritics (tashkeel) and its alef forms become one ("الْمِلْكِيَّة" and
    "الملكية" are one word; so are "أ", "إ", "آ" and "ا"). Chinese (and Japanese, Korean) has no
    spaces between words, so each character is a word: a keyword of several characters is a
    phrase, found where those characters follow each other in the text ("知识产权" is in
    "世界知识产权组织"), which is substring matching on the folded text.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold()).translate(_ARABIC)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(plain)


@dataclass(frozen=True)
class ArticleWords:
    """An article's words, with where each one occurs, to confirm phrases quickly."""

    sequence: tuple[str, ...]
    positions: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, article: Article) -> ArticleWords:
        sequence = tuple(words(f"{article.title}\n{article.summary_text}"))
        positions: dict[str, list[int]] = {}
        for index, word in enumerate(sequence):
            positions.setdefault(word, []).append(index)
        return cls(sequence, positions)

    def contains(self, phrase: Sequence[str]) -> bool:
        """Whole words, in order: "icann" is in "ICANN's reform" but not in "ICANNOT"."""
        if not phrase:
            return False
        size = len(phrase)
        return any(
            self.sequence[start : start + size] == tuple(phrase)
            for start in self.positions.get(phrase[0], ())
        )
