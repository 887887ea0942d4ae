"""An article's words, folded the way readers' keywords are, to find whole words and phrases."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from alerts.models import Article

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Text folded to its words: lower case, accents and punctuation gone ("ICANN's" ->
    ["icann", "s"], "Propriété" -> ["propriete"])."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
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
