"""Who gets which article: one rule for alerts and digests (`rule`), fan-out pages found by
indexed queries (`pages`), and the folding of an article's words (`words`)."""

from alerts.matching.pages import (
    ALL_FREQUENCIES,
    MAX_KEYWORDS,
    matching_subscribers,
    subscriber_pages,
    subscriber_pages_after,
)
from alerts.matching.rule import (
    Interest,
    Reason,
    Scope,
    alert_frequencies,
    interests,
    match,
    reasons,
    scope,
    scope_of,
)
from alerts.matching.words import ArticleWords, words

__all__ = [
    "ALL_FREQUENCIES",
    "MAX_KEYWORDS",
    "ArticleWords",
    "Interest",
    "Reason",
    "Scope",
    "alert_frequencies",
    "interests",
    "match",
    "matching_subscribers",
    "reasons",
    "scope",
    "scope_of",
    "subscriber_pages",
    "subscriber_pages_after",
    "words",
]
