"""The topic tree in memory: a few dozen rows, read in one query and walked in Python.

The one place that knows a topic's ancestors, depth, branch and root; the signup form,
matching, digests and the dashboard all ask it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.errors import UnknownTopic
from alerts.models import Topic


class TopicTree:
    """Every topic, with its parent; roots and children in site order."""

    def __init__(self, topics: Iterable[Topic]) -> None:
        ordered = sorted(topics, key=lambda topic: (topic.position, topic.id))
        self.topics = {topic.id: topic for topic in ordered}
        self.parents = {topic.id: topic.parent_id for topic in ordered}
        self._children: dict[int | None, list[Topic]] = {}
        for topic in ordered:
            self._children.setdefault(topic.parent_id, []).append(topic)

    @classmethod
    def load(cls, session: Session) -> TopicTree:
        return cls(session.scalars(select(Topic)))

    def roots(self) -> list[Topic]:
        return list(self._children.get(None, []))

    def children(self, topic_id: int) -> list[Topic]:
        return list(self._children.get(topic_id, []))

    def ancestors(self, topic_id: int) -> set[int]:
        """The topic and every topic above it."""
        found: set[int] = set()
        current: int | None = topic_id
        while current is not None and current not in found:
            found.add(current)
            current = self.parents.get(current)
        return found

    def expand(self, topic_ids: Iterable[int]) -> set[int]:
        """Topics with all their ancestors: a reader of a parent follows its whole branch."""
        expanded: set[int] = set()
        for topic_id in topic_ids:
            expanded |= self.ancestors(topic_id)
        return expanded

    def depth(self, topic_id: int) -> int:
        """0 for a root: the deeper, the more specific."""
        return len(self.ancestors(topic_id)) - 1

    def root(self, topic_id: int) -> Topic:
        current = topic_id
        while (parent := self.parents.get(current)) is not None:
            current = parent
        return self.topics[current]

    def most_specific(self, topic_ids: Iterable[int]) -> Topic:
        """The deepest of these topics (the first in site order among equals)."""
        return self.topics[max(topic_ids, key=lambda topic_id: (self.depth(topic_id), -topic_id))]

    def by_slug(self, slug: str) -> Topic:
        """Raises:
        UnknownTopic: no topic has this slug."""
        for topic in self.topics.values():
            if topic.slug == slug:
                return topic
        raise UnknownTopic(slug)

    def branch(self, topic_id: int) -> set[int]:
        """The topic and every topic below it."""
        return {other for other in self.topics if topic_id in self.ancestors(other)}
