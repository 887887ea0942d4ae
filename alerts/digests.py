"""Digests: when each reader is due, what goes in their digest, and digest runs.

Times are UTC from clock.now(); each reader's digest is due at their own local hour
(daily), on their weekday (weekly), or on the 1st (monthly), in their IANA zone.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import (
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.db import insert_ignoring_duplicates
from alerts.matching import ArticleWords, Reason
from alerts.models import (
    Article,
    ArticleTopic,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    DigestRun,
    DigestSchedule,
    Frequency,
    Keyword,
    RecipientStatus,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)

DIGEST_FREQUENCIES = (Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY)
MAX_ARTICLES = 50


@lru_cache(maxsize=1)
def timezones() -> frozenset[str]:
    """Every IANA zone name this machine knows (read once)."""
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def period_of(frequency: Frequency, at: datetime) -> str:
    """The calendar period (UTC) a run belongs to: 2026-11-28, 2026-W48, 2026-11."""
    if frequency is Frequency.WEEKLY:
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    if frequency is Frequency.MONTHLY:
        return f"{at:%Y-%m}"
    return f"{at:%Y-%m-%d}"


def next_send_time(
    frequency: Frequency, zone_name: str, hour: int, weekday: int, after: datetime
) -> datetime:
    """The first moment strictly after `after` when this reader's digest is due, in UTC."""
    tz = zone(zone_name)
    local = after.astimezone(tz)
    day = local.date()
    for _ in range(400):
        if frequency is Frequency.WEEKLY and day.weekday() != weekday:
            day += timedelta(days=1)
            continue
        if frequency is Frequency.MONTHLY and day.day != 1:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
            continue
        candidate = datetime(day.year, day.month, day.day, hour, tzinfo=tz)
        if candidate > local:
            return candidate.astimezone(ZoneInfo("UTC"))
        day += timedelta(days=1)
    raise ValueError("no send time found")  # pragma: no cover - the loop always finds one


def sync_schedules(session: Session, subscriber: Subscriber) -> None:
    """One schedule per digest frequency the reader follows; none for the others.

    Call after activation, after any change of topics, frequencies, zone or send hour.
    """
    followed = set(
        session.scalars(
            select(Subscription.frequency)
            .where(Subscription.subscriber_id == subscriber.id)
            .distinct()
        )
    ) | set(
        session.scalars(
            select(Keyword.frequency).where(Keyword.subscriber_id == subscriber.id).distinct()
        )
    )
    wanted = {frequency for frequency in followed if frequency in DIGEST_FREQUENCIES}
    existing = {
        schedule.frequency: schedule
        for schedule in session.scalars(
            select(DigestSchedule).where(DigestSchedule.subscriber_id == subscriber.id)
        )
    }
    current = now()

    def base(last_sent: datetime | None) -> datetime:
        # The next slot after the last digest, but a slot due within the hour that beat has
        # not sent yet still counts; a paused reader's next digest comes after the pause.
        moment = max(last_sent or current, current - timedelta(hours=1))
        if subscriber.paused_until and subscriber.paused_until > current:
            moment = max(moment, subscriber.paused_until - timedelta(seconds=1))
        return moment

    for frequency, schedule in existing.items():
        if frequency not in wanted:
            session.delete(schedule)
        else:
            schedule.next_at = next_send_time(
                frequency,
                subscriber.timezone,
                subscriber.send_hour,
                subscriber.send_weekday,
                base(schedule.last_sent_at),
            )
    for frequency in wanted - set(existing):
        session.add(
            DigestSchedule(
                subscriber_id=subscriber.id,
                frequency=frequency,
                # A new digest starts with what is new from now, not with the archive.
                last_sent_at=current,
                next_at=next_send_time(
                    frequency,
                    subscriber.timezone,
                    subscriber.send_hour,
                    subscriber.send_weekday,
                    base(current),
                ),
            )
        )
    session.flush()


def drop_schedules(session: Session, subscriber_id: int) -> None:
    """A reader who left or bounced is due no digest (confirming again restores them)."""
    session.execute(delete(DigestSchedule).where(DigestSchedule.subscriber_id == subscriber_id))


# --- runs ---------------------------------------------------------------------------------


def start_run(
    session: Session, frequency: Frequency, scope: str, triggered_by: str
) -> tuple[DigestRun, bool]:
    """The run of this frequency's current period (and scope): created, or the existing one."""
    period = period_of(frequency, now())
    run = DigestRun(frequency=frequency, period=period, scope=scope, triggered_by=triggered_by)
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        existing = session.scalar(
            select(DigestRun).where(
                DigestRun.frequency == frequency,
                DigestRun.period == period,
                DigestRun.scope == scope,
            )
        )
        if existing is None:
            raise
        return existing, False
    return run, True


def scope_topic_ids(session: Session, scope: str) -> tuple[set[int], set[int]] | None:
    """For a run restricted to one topic: (that topic and its branch, its ancestors)."""
    if not scope:
        return None
    parents = dict(session.execute(select(Topic.id, Topic.parent_id)).all())
    root = session.scalar(select(Topic.id).where(Topic.slug == scope))
    if root is None:
        raise ValueError(f"unknown topic {scope!r}")
    branch = {root} | {topic_id for topic_id in parents if root in _ancestors(parents, topic_id)}
    return branch, _ancestors(parents, root) - {root}


def _ancestors(parents: dict[int, int | None], topic_id: int) -> set[int]:
    found: set[int] = set()
    current: int | None = topic_id
    while current is not None and current not in found:
        found.add(current)
        current = parents.get(current)
    return found


def _reader_filter(session: Session, run: DigestRun, due_only: bool) -> list[object]:
    conditions: list[object] = [
        DigestSchedule.frequency == run.frequency,
        Subscriber.receiving(now()),
    ]
    # One queued row per reader in a run at a time: a reader whose schedule moved while
    # their digest was being sent is not queued twice.
    conditions.append(
        ~exists().where(
            DigestRecipient.run_id == run.id,
            DigestRecipient.subscriber_id == DigestSchedule.subscriber_id,
            DigestRecipient.status == RecipientStatus.QUEUED,
        )
    )
    if due_only:
        conditions.append(DigestSchedule.next_at <= now())
    else:
        # Started by hand (or again): every reader not yet done in this run.
        conditions.append(
            ~exists().where(
                DigestRecipient.run_id == run.id,
                DigestRecipient.subscriber_id == DigestSchedule.subscriber_id,
                DigestRecipient.status != RecipientStatus.QUEUED,
            )
        )
    scoped = scope_topic_ids(session, run.scope)
    if scoped is not None:
        branch, ancestors = scoped
        conditions.append(
            exists().where(
                Subscription.subscriber_id == DigestSchedule.subscriber_id,
                Subscription.frequency == run.frequency,
                Subscription.topic_id.in_(branch | ancestors),
            )
        )
    return conditions


def enqueue(session: Session, run: DigestRun, due_only: bool) -> int:
    """Add the run's readers as queued recipients; returns how many new.

    Scheduled runs take readers whose time has come; a run an admin starts takes every
    reader of the frequency at once. A recipient is one reader's due slot (their next_at):
    once per slot, so a reader whose next slot falls in the same UTC day (a send ahead of
    time, a change of daylight saving time) is taken again for that slot.
    """
    readers = (
        select(
            literal(run.id),
            DigestSchedule.subscriber_id,
            DigestSchedule.next_at,
            literal(RecipientStatus.QUEUED.value),
            literal(0),
            literal(0),
            literal(now()),
        )
        .join(Subscriber, Subscriber.id == DigestSchedule.subscriber_id)
        .where(*_reader_filter(session, run, due_only))  # type: ignore[arg-type]
    )
    columns = [
        "run_id",
        "subscriber_id",
        "slot",
        "status",
        "attempts",
        "article_count",
        "updated_at",
    ]
    before = _recipient_count(session, run.id)
    session.execute(
        insert_ignoring_duplicates(session, DigestRecipient.__table__).from_select(columns, readers)
    )
    session.flush()
    added = _recipient_count(session, run.id) - before
    if added:
        run.finished_at = None  # readers joined a finished run: the reconciler looks again
    return added


def _recipient_count(session: Session, run_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(DigestRecipient)
            .where(DigestRecipient.run_id == run_id)
        )
        or 0
    )


@dataclass(frozen=True)
class RunProgress:
    run: DigestRun
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.counts.get(RecipientStatus.QUEUED.value, 0)

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.run.id,
            "frequency": self.run.frequency.value,
            "period": self.run.period,
            "scope": self.run.scope or None,
            "triggered_by": self.run.triggered_by,
            "created_at": self.run.created_at.isoformat(),
            "finished_at": self.run.finished_at.isoformat() if self.run.finished_at else None,
            "total": self.total,
            "sent": self.counts.get("sent", 0),
            "skipped": self.counts.get("skipped", 0),
            "failed": self.counts.get("failed", 0),
            "remaining": self.remaining,
            "done": self.done,
        }


def progress(session: Session, run: DigestRun) -> RunProgress:
    rows = session.execute(
        select(DigestRecipient.status, func.count())
        .where(DigestRecipient.run_id == run.id)
        .group_by(DigestRecipient.status)
    )
    counts = {str(status): int(number) for status, number in rows}
    result = RunProgress(run, counts)
    if result.done and result.total and run.finished_at is None:
        run.finished_at = now()
    return result


# --- content ------------------------------------------------------------------------------


KEYWORDS_GROUP = "Your keywords"


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


class TopicTree:
    """The topic tree in memory (a few dozen rows): parents, depth, roots."""

    def __init__(self, session: Session) -> None:
        self.topics = {topic.id: topic for topic in session.scalars(select(Topic))}
        self.parents = {topic.id: topic.parent_id for topic in self.topics.values()}

    def ancestors(self, topic_id: int) -> set[int]:
        return _ancestors(self.parents, topic_id)

    def depth(self, topic_id: int) -> int:
        return len(self.ancestors(topic_id)) - 1

    def roots(self) -> list[Topic]:
        return [topic for topic in self.topics.values() if topic.parent_id is None]

    def root(self, topic_id: int) -> Topic:
        current = topic_id
        while (parent := self.parents.get(current)) is not None:
            current = parent
        return self.topics[current]


def build_contents(
    session: Session,
    frequency: Frequency,
    subscriber_ids: Collection[int],
    scope: str = "",
    tree: TopicTree | None = None,
    limit: int = MAX_ARTICLES,
) -> dict[int, DigestContent]:
    """Each reader's digest now: every matching article not sent to them yet, published since
    their previous digest (or since they confirmed), each once, grouped, newest first."""
    tree = tree or TopicTree(session)
    current = now()
    readers = {
        reader.id: reader
        for reader in session.scalars(
            select(Subscriber).where(
                Subscriber.id.in_(list(subscriber_ids)), Subscriber.receiving(current)
            )
        )
    }
    if not readers:
        return {}
    follows: dict[int, set[int]] = {}
    follows_any: dict[int, set[int]] = {}  # every frequency: for "keywords within my topics"
    for subscriber_id, topic_id, topic_frequency in session.execute(
        select(Subscription.subscriber_id, Subscription.topic_id, Subscription.frequency).where(
            Subscription.subscriber_id.in_(list(readers))
        )
    ):
        follows_any.setdefault(subscriber_id, set()).add(topic_id)
        if topic_frequency is frequency:
            follows.setdefault(subscriber_id, set()).add(topic_id)
    keywords: dict[int, list[tuple[str, list[str]]]] = {}
    has_keywords: set[int] = set()
    for subscriber_id, phrase, folded, keyword_frequency in session.execute(
        select(Keyword.subscriber_id, Keyword.phrase, Keyword.words, Keyword.frequency)
        .where(Keyword.subscriber_id.in_(list(readers)))
        .order_by(Keyword.id)
    ):
        has_keywords.add(subscriber_id)
        if keyword_frequency is frequency:
            keywords.setdefault(subscriber_id, []).append((phrase, folded.split()))
    languages: dict[int, set[str]] = {}
    for subscriber_id, code in session.execute(
        select(SubscriberLanguage.subscriber_id, SubscriberLanguage.language_code).where(
            SubscriberLanguage.subscriber_id.in_(list(readers))
        )
    ):
        languages.setdefault(subscriber_id, set()).add(code)
    last_sent = dict(
        session.execute(
            select(DigestSchedule.subscriber_id, DigestSchedule.last_sent_at).where(
                DigestSchedule.subscriber_id.in_(list(readers)),
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

    # The articles of the window, with their topics expanded to ancestors: loaded once.
    # The window is by arrival (created_at), not by the date an article carries: a feed entry
    # read late, or an article published with a past date, still reaches the next digest;
    # the ledger keeps anything already sent out.
    earliest = min(since.values())
    articles = list(
        session.scalars(
            select(Article)
            .where(Article.created_at >= earliest, Article.created_at <= current)
            .order_by(Article.published_at.desc(), Article.id.desc())
        )
    )
    if not articles:
        return {
            reader_id: DigestContent(readers[reader_id], frequency, until=current)
            for reader_id in readers
        }
    article_topics: dict[int, set[int]] = {}
    for article_id, topic_id in session.execute(
        select(ArticleTopic.article_id, ArticleTopic.topic_id).where(
            ArticleTopic.article_id.in_([article.id for article in articles])
        )
    ):
        article_topics.setdefault(article_id, set()).update(tree.ancestors(topic_id))
    scoped = scope_topic_ids(session, scope)
    delivered = set(
        session.execute(
            select(Delivery.subscriber_id, Delivery.article_id).where(
                Delivery.subscriber_id.in_(list(readers)),
                Delivery.article_id.in_([article.id for article in articles]),
                # A claim of this same digest, left by a run that died, is ours to finish.
                or_(Delivery.status != DeliveryStatus.PENDING, Delivery.digest_run_id.is_(None)),
            )
        ).all()
    )

    article_words: dict[int, ArticleWords] = {}

    def words_of(article: Article) -> ArticleWords:
        if article.id not in article_words:
            article_words[article.id] = ArticleWords.of(article)
        return article_words[article.id]

    contents: dict[int, DigestContent] = {}
    for reader_id, reader in readers.items():
        content = DigestContent(reader, frequency, until=current)
        grouped: dict[str, list[DigestItem]] = {}
        followed = follows.get(reader_id, set())
        phrases = keywords.get(reader_id, [])
        strict = reader.keywords_within_topics and reader_id in has_keywords
        for article in articles:
            if article.created_at < since[reader_id]:
                continue
            topics = article_topics.get(article.id, set())
            if (
                article.language_code not in languages.get(reader_id, ())
                or (reader_id, article.id) in delivered
                or (scoped is not None and not topics & scoped[0])
            ):
                continue
            matched = topics & followed
            mentioned = next(
                (phrase for phrase, folded in phrases if words_of(article).contains(folded)),
                None,
            )
            if strict:
                # Keywords within my topics: a keyword hit inside any followed topic.
                if mentioned is None or not topics & follows_any.get(reader_id, set()):
                    continue
                item = DigestItem(article, Reason("keyword", mentioned))
                group = tree.root(max(topics & follows_any[reader_id], key=tree.depth)).name
            elif matched:
                topic_id = max(matched, key=tree.depth)
                item = DigestItem(article, Reason("topic", tree.topics[topic_id].name))
                group = tree.root(topic_id).name
            elif mentioned is not None:
                item = DigestItem(article, Reason("keyword", mentioned))
                group = KEYWORDS_GROUP
            else:
                continue
            grouped.setdefault(group, []).append(item)
            content.article_ids.append(article.id)
        # The newest `limit` articles are shown, under their groups in site order.
        shown_ids = set(content.article_ids[:limit])
        order = {root.name: (root.position, root.id) for root in tree.roots()}
        for group in sorted(grouped, key=lambda name: order.get(name, (10**6, 0))):
            items = [item for item in grouped[group] if item.article.id in shown_ids]
            if items:
                content.groups.append((group, items))
        contents[reader_id] = content
    return contents


def due_frequencies(session: Session) -> list[Frequency]:
    """The digest frequencies with at least one reader due now."""
    current = now()
    return [
        frequency
        for frequency in DIGEST_FREQUENCIES
        if session.scalar(
            select(
                exists().where(
                    and_(DigestSchedule.frequency == frequency, DigestSchedule.next_at <= current)
                )
            )
        )
    ]


# --- starting runs (admin, API, CLI) ------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    frequency: Frequency
    scope: str
    readers: int  # readers of the frequency (and scope) not yet done in this period's run
    emails: int  # of those, readers whose digest has something new: who would get an email
    sample: DigestContent | None


def existing_run(session: Session, frequency: Frequency, scope: str) -> DigestRun | None:
    return session.scalar(
        select(DigestRun).where(
            DigestRun.frequency == frequency,
            DigestRun.period == period_of(frequency, now()),
            DigestRun.scope == scope,
        )
    )


def dry_run(session: Session, frequency: Frequency, scope: str = "", page: int = 500) -> DryRun:
    """What starting a run now would do; records nothing."""
    scope_topic_ids(session, scope)  # an unknown scope raises ValueError here
    run = existing_run(session, frequency, scope)
    conditions = [
        DigestSchedule.frequency == frequency,
        Subscriber.status == SubscriberStatus.ACTIVE,
    ]
    if run is not None:
        conditions.append(
            ~exists().where(
                DigestRecipient.run_id == run.id,
                DigestRecipient.subscriber_id == DigestSchedule.subscriber_id,
                DigestRecipient.status != RecipientStatus.QUEUED,
            )
        )
    tree = TopicTree(session)
    readers = emails = 0
    sample: DigestContent | None = None
    after = 0
    while True:
        ids = list(
            session.scalars(
                select(DigestSchedule.subscriber_id)
                .join(Subscriber, Subscriber.id == DigestSchedule.subscriber_id)
                .where(*conditions, DigestSchedule.subscriber_id > after)
                .order_by(DigestSchedule.subscriber_id)
                .limit(page)
            )
        )
        if not ids:
            break
        after = ids[-1]
        contents = build_contents(session, frequency, ids, scope, tree)
        readers += len(contents)
        for subscriber_id in ids:
            content = contents.get(subscriber_id)
            if content is not None and content.total:
                emails += 1
                sample = sample or content
    return DryRun(frequency, scope, readers, emails, sample)


def trigger(
    session: Session, frequency: Frequency, scope: str, triggered_by: str
) -> tuple[DigestRun, bool]:
    """Start (or join) this period's run and queue every reader of the frequency; the caller
    commits, then queues the send tasks."""
    scope_topic_ids(session, scope)
    run, created = start_run(session, frequency, scope, triggered_by)
    enqueue(session, run, due_only=False)
    return run, created


def preview(
    session: Session, subscriber: Subscriber, frequency: Frequency, scope: str = ""
) -> DigestContent:
    """Exactly the digest this reader would get now; records nothing."""
    content = build_contents(session, frequency, [subscriber.id], scope).get(subscriber.id)
    return content or DigestContent(subscriber, frequency)
