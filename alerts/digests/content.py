"""What goes in a reader's digest: every article the one matching rule gives them since
their previous digest, not sent to them yet, grouped by top-level topic, newest first.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from alerts import db, revisions
from alerts.clock import now
from alerts.digests.runs import scope_topic_ids
from alerts.i18n import Text
from alerts.matching import Reason, interests, match, scope_of
from alerts.models import (
    DELIVERY_PENDING,
    HELD_FOR_NEXT_DIGEST,
    NOT_HELD_FOR_NEXT_DIGEST,
    Article,
    ArticleTopic,
    Delivery,
    DeliveryStatus,
    DigestSchedule,
    Frequency,
    Subscriber,
)
from alerts.topic_tree import TopicTree

MAX_ARTICLES = 50


KEYWORDS_GROUP = Text("Your keywords")


@dataclass(frozen=True)
class DigestItem:
    article: Article
    reason: Reason  # the followed topic or the keyword that matched: "why you got this"


@dataclass
class DigestContent:
    subscriber: Subscriber
    frequency: Frequency
    # (group title: a top-level topic, or "Your keywords"; its items newest first)
    groups: list[tuple[str, list[DigestItem]]] = field(default_factory=list)
    # Every article of the digest, the ones past the shown limit too ("and N more").
    article_ids: list[int] = field(default_factory=list)
    # The end of the window this digest covers (articles arrived up to then).
    until: datetime | None = None
    # Articles sent to the reader before, changed since: "Updated since we sent it".
    updates: list[revisions.Update] = field(default_factory=list)
    # Every article the batch's digests may carry, by id (shared by a batch).
    articles: dict[int, Article] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.article_ids)

    @property
    def shown(self) -> int:
        return sum(len(items) for _, items in self.groups)

    @property
    def more(self) -> int:
        return self.total - self.shown

    def keep_only(self, article_ids: Collection[int]) -> None:
        """Drop articles another sender took between building and claiming."""
        keep = set(article_ids)
        self.article_ids = [article_id for article_id in self.article_ids if article_id in keep]
        groups = []
        for root, items in self.groups:
            kept = [item for item in items if item.article.id in keep]
            if kept:
                groups.append((root, kept))
        self.groups = groups

    def keep_updates(self, revision_ids: Collection[int]) -> set[int]:
        """Keep the updates this digest holds every change of (another email holds part of
        the others, and tells them whole); returns the changes it tells."""
        held = set(revision_ids)
        self.updates = [u for u in self.updates if held.issuperset(u.revision_ids)]
        return {r for u in self.updates for r in u.revision_ids}

    @property
    def empty(self) -> bool:
        return not self.article_ids and not self.updates


def build_contents(
    session: Session,
    frequency: Frequency,
    subscriber_ids: Collection[int],
    scope: str = "",
    tree: TopicTree | None = None,
    limit: int = MAX_ARTICLES,
    run_id: int | None = None,
) -> dict[int, DigestContent]:
    """Each reader's digest now: every matching article not sent to them yet, published since
    their previous digest (or since they confirmed), each once, grouped, newest first.
    `run_id`: the run this digest belongs to; what an earlier attempt of it claimed is carried
    whatever the window (another digest of the reader's may have moved it past those).

    Raises:
        UnknownTopic: `scope` names no topic.
    """
    tree = tree or TopicTree.load(session)
    current = now()
    wants = interests(session, subscriber_ids, (frequency,))
    if not wants:
        return {}
    readers = {
        reader.id: reader
        for reader in session.scalars(
            select(Subscriber).where(db.among(session, Subscriber.id, list(wants)))
        )
    }
    last_sent = dict(
        session.execute(
            select(DigestSchedule.subscriber_id, DigestSchedule.last_sent_at).where(
                db.among(session, DigestSchedule.subscriber_id, list(readers)),
                DigestSchedule.frequency == frequency,
            )
        ).all()
    )
    # Since the previous digest, or since they (re)confirmed: a returning reader does not
    # get what was published while they were away.
    since = {
        reader.id: max(
            moment
            for moment in (last_sent.get(reader.id), reader.confirmed_at, reader.created_at)
            if moment is not None
        )
        for reader in readers.values()
    }

    # The articles of the window, each scoped once (topics expanded to ancestors, words).
    # The window is by arrival (created_at), not by the date an article carries: a feed entry
    # read late, or an article published with a past date, still reaches the next digest;
    # the ledger keeps anything already sent out.
    articles = revisions.load(
        session, and_(Article.created_at >= min(since.values()), Article.created_at <= current)
    )
    # Articles they were sent and that changed since (a digest scoped to one topic tells none).
    updates = revisions.updates_for(session, list(readers), current) if not scope else {}
    # Instant alerts held past a reader's daily cap: this digest carries them, whenever they
    # arrived, for the reason their alert had (a digest scoped to one topic does not).
    overflow = _held_for_next_digest(session, list(readers)) if not scope else {}
    # What an earlier attempt of this run claimed for them, still theirs whatever the window.
    claimed = _claimed_by_run(session, run_id, list(readers)) if run_id is not None else {}
    known = {article.id for article in articles}
    extra = {a for carried in (overflow, claimed) for ids in carried.values() for a in ids} - known
    if extra:
        articles += revisions.load(session, Article.id.in_(extra))
        articles.sort(key=lambda a: (a.published_at, a.id), reverse=True)
    if overflow:
        alert_interests = interests(session, list(overflow), tuple(Frequency))
    by_id = {article.id: article for article in articles}
    if not articles:
        return {
            subscriber_id: DigestContent(
                readers[subscriber_id],
                frequency,
                until=current,
                updates=updates.get(subscriber_id, []),
                articles=by_id,
            )
            for subscriber_id in readers
        }
    own_topics: dict[int, list[int]] = {article.id: [] for article in articles}
    for article_id, topic_id in session.execute(
        select(ArticleTopic.article_id, ArticleTopic.topic_id).where(
            ArticleTopic.article_id.in_(list(own_topics))
        )
    ):
        own_topics[article_id].append(topic_id)
    scopes = {article.id: scope_of(article, own_topics[article.id], tree) for article in articles}
    scoped = scope_topic_ids(session, scope, tree)
    delivered = set(
        session.execute(
            select(Delivery.subscriber_id, Delivery.article_id).where(
                db.among(session, Delivery.subscriber_id, list(readers)),
                Delivery.article_id.in_(list(own_topics)),
                # A claim of this same digest, left by a run that died, is ours to finish.
                or_(Delivery.status != DeliveryStatus.PENDING, Delivery.digest_run_id.is_(None)),
            )
        ).all()
    )

    order = {root.name: (root.position, root.id) for root in tree.roots()}
    # Readers of one shape (the same topics, languages, keywords) get the same answer for an
    # article: worked out once per shape and article.
    answers: dict[tuple[object, int], tuple[Reason, str] | None] = {}
    # And readers of one shape whose windows hold the same articles, none of them sent to
    # them yet nor held past their cap, get the same digest: built once, copied.
    built: dict[tuple[object, tuple[int, ...]], DigestContent] = {}
    windows: dict[datetime, tuple[int, ...]] = {}  # since -> the articles arrived since
    sent_some = {subscriber_id for subscriber_id, _ in delivered}
    contents: dict[int, DigestContent] = {}
    for subscriber_id, reader in readers.items():
        content = DigestContent(
            reader,
            frequency,
            until=current,
            updates=updates.get(subscriber_id, []),
            articles=by_id,
        )
        same = None
        if not any(subscriber_id in other for other in (overflow, sent_some, claimed)):
            start = since[subscriber_id]
            if start not in windows:
                windows[start] = tuple(a.id for a in articles if a.created_at >= start)
            same = (wants[subscriber_id].shape, windows[start])
        if same is not None and same in built:
            twin = built[same]
            content.groups = [(group, list(items)) for group, items in twin.groups]
            content.article_ids = list(twin.article_ids)
            contents[subscriber_id] = content
            continue
        grouped: dict[str, list[DigestItem]] = {}
        for article in articles:
            article_scope = scopes[article.id]
            if article.id in overflow.get(subscriber_id, ()):
                reason = match(alert_interests[subscriber_id], article_scope, tree)
                if reason is not None:
                    heading = (
                        tree.root(reason.topic_id).label
                        if reason.topic_id is not None
                        else KEYWORDS_GROUP
                    )
                    grouped.setdefault(heading, []).append(DigestItem(article, reason))
                    content.article_ids.append(article.id)
                continue
            if (
                (
                    article.created_at < since[subscriber_id]
                    and article.id not in claimed.get(subscriber_id, ())
                )
                or (subscriber_id, article.id) in delivered
                or (scoped is not None and not scoped[0].intersection(article_scope.topic_ids))
            ):
                continue
            key = (wants[subscriber_id].shape, article.id)
            if key not in answers:
                reason = match(wants[subscriber_id], article_scope, tree)
                # A str of the English name, shown in the reader's language.
                answers[key] = (
                    None
                    if reason is None
                    else (
                        reason,
                        tree.root(reason.topic_id).label
                        if reason.topic_id is not None
                        else KEYWORDS_GROUP,
                    )
                )
            answer = answers[key]
            if answer is None:
                continue
            reason, group = answer
            grouped.setdefault(group, []).append(DigestItem(article, reason))
            content.article_ids.append(article.id)
        # The newest `limit` articles are shown, under their groups in site order.
        shown_ids = set(content.article_ids[:limit])
        for group in sorted(grouped, key=lambda name: order.get(name, (10**6, 0))):
            items = [item for item in grouped[group] if item.article.id in shown_ids]
            if items:
                content.groups.append((group, items))
        contents[subscriber_id] = content
        if same is not None:
            built[same] = content
    return contents


def _held_for_next_digest(session: Session, subscriber_ids: list[int]) -> dict[int, set[int]]:
    """Reader -> the articles held for their next digest (models.FOR_NEXT_DIGEST: an instant
    alert their daily cap held back, or a digest's article its retry no longer carried), and
    those a digest took and has not sent yet: a retry of that digest carries them again."""
    held: dict[int, set[int]] = {}
    for subscriber_id, article_id in session.execute(
        select(Delivery.subscriber_id, Delivery.article_id).where(
            db.among(session, Delivery.subscriber_id, subscriber_ids),
            HELD_FOR_NEXT_DIGEST,
            or_(
                Delivery.status == DeliveryStatus.HELD,
                and_(DELIVERY_PENDING, Delivery.digest_run_id.is_not(None)),
            ),
        )
    ):
        held.setdefault(subscriber_id, set()).add(article_id)
    return held


def _claimed_by_run(
    session: Session, run_id: int, subscriber_ids: list[int]
) -> dict[int, set[int]]:
    """Reader -> the articles an earlier attempt of the run claimed for their digest (rows
    held for the next digest aside: `_held_for_next_digest` carries those)."""
    claimed: dict[int, set[int]] = {}
    for subscriber_id, article_id in session.execute(
        select(Delivery.subscriber_id, Delivery.article_id).where(
            Delivery.digest_run_id == run_id,
            db.among(session, Delivery.subscriber_id, subscriber_ids),
            DELIVERY_PENDING,
            NOT_HELD_FOR_NEXT_DIGEST,
        )
    ):
        claimed.setdefault(subscriber_id, set()).add(article_id)
    return claimed
