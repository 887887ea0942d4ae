"""The tables: topics, languages, subscribers and their subscriptions, articles, deliveries."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

from alerts.clock import now
from alerts.i18n import Localized


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (SQLite has none) and always returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; every stored time is aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def _enum_column(enum_class: type[enum.StrEnum]) -> Enum:
    """A VARCHAR holding the enum's values (not its names), the same on SQLite and PostgreSQL."""
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Frequency(enum.StrEnum):
    IMMEDIATE = "immediate"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # owed: waiting for a send task, held by one, or waiting for a retry
    SENT = "sent"
    FAILED = "failed"  # temporary refusals of this reader for longer than the retry horizon
    BOUNCED = "bounced"
    SKIPPED = "skipped"  # the reader left or paused before it went out: no longer owed
    # Kept back from an instant alert (`held`): in quiet hours, sent in one email when they
    # end (`held_until`); past the reader's daily cap, carried by their next digest.
    HELD = "held"


class RecipientStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    SKIPPED = "skipped"  # nothing new: no email
    FAILED = "failed"


class TopicKind(enum.StrEnum):
    SECTION = "section"
    VENUE = "venue"
    THEME = "theme"


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[TopicKind] = mapped_column(_enum_column(TopicKind))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The topic's name in the site's other languages ({"fr": "Droit d'auteur", ...}).
    names: Mapped[dict[str, str] | None] = mapped_column(JSON)

    parent: Mapped[Topic | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Topic]] = relationship(back_populates="parent", order_by="Topic.position")

    @property
    def label(self) -> Localized:
        """The name, shown in the language of whoever reads it (a str of the English name)."""
        return Localized(self.name, self.names)


class Language(Base):
    __tablename__ = "languages"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    native_name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Subscriber(Base):
    __tablename__ = "subscribers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum_column(SubscriberStatus), default=SubscriberStatus.PENDING, index=True
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # The language of the pages and emails the reader gets (one of i18n.LOCALES), whatever the
    # languages of the articles they follow.
    locale: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    # Digests go out at this local hour; weekly ones on this weekday (0 = Monday).
    send_hour: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    send_weekday: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Carried by every link in emails: a link made for an erased reader opens nobody else,
    # even where the database hands the same id out again.
    # (Nullable in the schema only: making it NOT NULL would rebuild the table on SQLite.)
    link_key: Mapped[str] = mapped_column(
        String(16), nullable=True, default=lambda: secrets.token_hex(8)
    )
    # The secret in the address of the reader's private Atom feed (/feed/<key>); a new one
    # revokes the old address. None until the preference centre first shows it.
    feed_key: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    # Changes with every confirmation email; a link carrying an older one is spent.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32))
    confirmation_sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    confirmed_at: Mapped[datetime | None]
    # The welcome email (what they follow, the preference centre's link) went out then.
    welcomed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # How the reader left ("one-click", "unsubscribe page") or why we stopped ("550 …").
    unsubscribe_reason: Mapped[str | None] = mapped_column(String(500))
    # When we stopped sending because of bounces (see unsubscribe_reason for why).
    suppressed_at: Mapped[datetime | None]
    # No email at all until then (the preference centre's pause).
    paused_until: Mapped[datetime | None]
    # At most this many instant alerts a day (the reader's day); the rest go in the next
    # digest. None: no limit.
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    # Quiet hours, minutes after local midnight (from > until: across midnight); None: none.
    quiet_from: Mapped[int | None] = mapped_column(Integer)
    quiet_until: Mapped[int | None] = mapped_column(Integer)
    # Urgent articles come at once even in quiet hours.
    urgent_in_quiet: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    # A short email when an article they got as an alert is corrected (on by default).
    corrections: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    # True: a keyword counts only in articles of the reader's topics; False: topics or keywords.
    keywords_within_topics: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sa_false()
    )

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )
    languages: Mapped[list[SubscriberLanguage]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    consents: Mapped[list[ConsentRecord]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )
    keywords: Mapped[list[Keyword]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Keyword.id"
    )

    @classmethod
    def receiving(cls, at: datetime) -> Any:
        """SQL condition: active and not paused at `at`."""
        return and_(
            cls.status == SubscriberStatus.ACTIVE,
            or_(cls.paused_until.is_(None), cls.paused_until <= at),
        )

    @property
    def language_codes(self) -> list[str]:
        return sorted(language.language_code for language in self.languages)


# One subscriber per address whatever its case; lookups use lower(email) too.
Index("uq_subscribers_email_lower", func.lower(Subscriber.email), unique=True)


class SubscriberLanguage(Base):
    __tablename__ = "subscriber_languages"
    __table_args__ = (Index("ix_subscriber_languages_language", "language_code", "subscriber_id"),)

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    language_code: Mapped[str] = mapped_column(ForeignKey("languages.code"), primary_key=True)


class Subscription(Base):
    """One topic a subscriber follows, with its own frequency (GOV.UK style)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "topic_id"),
        # Matching walks from an article's topics to subscribers: topic first.
        Index("ix_subscriptions_topic_frequency", "topic_id", "frequency", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    frequency: Mapped[Frequency] = mapped_column(_enum_column(Frequency))
    created_at: Mapped[datetime] = mapped_column(default=now)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()


class ConsentRecord(Base):
    """Proof of consent: when, from where, and which version of the form text was agreed to."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[datetime] = mapped_column(default=now)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text)
    form_version: Mapped[str] = mapped_column(String(64))
    # Who recorded it when not the reader themselves (the admin who imported a list).
    recorded_by: Mapped[str | None] = mapped_column(String(200))

    subscriber: Mapped[Subscriber] = relationship(back_populates="consents")


class TopicAlias(Base):
    """Another name for a topic (or a language) as a site writes it, e.g. "Copyright Policy".

    `key` is the name folded by articles.alias_key(): case, accents and punctuation removed.
    An alias with neither topic nor language is a known category that carries no topic.
    """

    __tablename__ = "topic_aliases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    language_code: Mapped[str | None] = mapped_column(ForeignKey("languages.code"))

    topic: Mapped[Topic | None] = relationship()


class ArticleRevision(Base):
    """A change to a published article's title or summary, once it was stored: readers who
    got the article before it see it again under "Updated since we sent it" in their next
    digest; a `correction` is also told to instant readers in a short email."""

    __tablename__ = "article_revisions"
    __table_args__ = (
        Index("ix_article_revisions_created", "created_at", "article_id"),
        Index("ix_article_revisions_article", "article_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    old_title: Mapped[str] = mapped_column(String(500))
    new_title: Mapped[str] = mapped_column(String(500))
    old_summary_text: Mapped[str] = mapped_column(Text, default="")
    new_summary_text: Mapped[str] = mapped_column(Text, default="")
    # The publisher marked it as a correction to notify; `note` is what they say about it.
    correction: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(default=now)
    # A correction's emails: when its readers were last looked for (among alerts sent with
    # an older version), and when no alert of the article could be sent any more (done).
    swept_at: Mapped[datetime | None]
    notices_done_at: Mapped[datetime | None]

    article: Mapped[Article] = relationship()

    @property
    def title_changed(self) -> bool:
        return self.old_title != self.new_title

    @property
    def summary_changed(self) -> bool:
        return self.old_summary_text != self.new_summary_text


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    guid: Mapped[str] = mapped_column(String(1000), unique=True)
    # Who published it: "api" (the API and the CLI) or "feed:<id>". Only its source may
    # update it. NULL: stored before sources were recorded; the next source to send it
    # again becomes its owner.
    source: Mapped[str | None] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(String(500))
    summary_html: Mapped[str] = mapped_column(Text, default="")
    summary_text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(200), default="")
    language_code: Mapped[str] = mapped_column(ForeignKey("languages.code"))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    # Fan-out, recorded so that the database, not the broker, knows what is owed:
    # NULL until every matching reader has a pending delivery (set at once for articles that
    # alert nobody, like what a feed held before its first poll).
    fanned_out_at: Mapped[datetime | None] = mapped_column(index=True)
    # The last reader id fan-out has written deliveries for: a fan-out resumes after it.
    fanout_after: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The fan-out task holding the article, renewed per page; a stale lease is taken over.
    fanout_token: Mapped[str | None] = mapped_column(String(32))
    fanout_claimed_at: Mapped[datetime | None]
    # When a task for this article (fan-out or sending) was last put on the broker.
    queued_at: Mapped[datetime | None]

    topics: Mapped[list[Topic]] = relationship(secondary="article_topics", order_by="Topic.id")
    # Its version: the id of its latest revision (0 as first published), loaded in the same
    # statement as the rest of it, so the content and the version an email records agree.
    version: Mapped[int] = column_property(
        select(func.coalesce(func.max(ArticleRevision.id), 0))
        .where(ArticleRevision.article_id == id)
        .correlate_except(ArticleRevision)
        .scalar_subquery()
    )


class ArticleTopic(Base):
    __tablename__ = "article_topics"
    __table_args__ = (Index("ix_article_topics_topic", "topic_id", "article_id"),)

    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)


# The outcomes the dashboard counts, written into its statements as into its index's
# predicate: SQLite uses a partial index only for a query that states the predicate itself.
DELIVERY_OUTCOMES = text("status IN ('sent', 'failed', 'bounced')")


class Delivery(Base):
    """The send ledger: one row per (subscriber, article), written `pending` by fan-out (or by
    a digest as it sends) and claimed by a send task before the email goes out.

    The unique constraint is what makes "never twice" hold across retries, re-runs and races.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "article_id"),
        # A send task takes an article's next pending readers in id order, and the reconciler
        # looks for pending rows nobody holds. Only pending alerts are indexed: the index
        # stays as small as what is owed, and a sent row leaves it instead of being filed
        # among millions. A digest's rows are found by its run and reader (below), so its
        # ten articles are not ten entries written at the claim and removed at the send.
        # A query meant to use it says both `DELIVERY_PENDING` and `digest_run_id IS NULL`.
        Index(
            "ix_deliveries_pending",
            "article_id",
            "subscriber_id",
            sqlite_where=text("status = 'pending' AND digest_run_id IS NULL"),
            postgresql_where=text("status = 'pending' AND digest_run_id IS NULL"),
        ),
        # The dashboard's 30 days of outcomes; new entries land at the end of their status.
        # Rows still on their way are left out: a row enters once, with its outcome.
        Index(
            "ix_deliveries_status_updated",
            "status",
            "updated_at",
            sqlite_where=DELIVERY_OUTCOMES,
            postgresql_where=DELIVERY_OUTCOMES,
        ),
        # A digest batch takes its readers' rows of the run (not every row of the run). An
        # alert's row has no run, and no entry: every statement using it names a run.
        Index(
            "ix_deliveries_digest_run_subscriber",
            "digest_run_id",
            "subscriber_id",
            sqlite_where=text("digest_run_id IS NOT NULL"),
            postgresql_where=text("digest_run_id IS NOT NULL"),
        ),
        # Alerts held back (quiet hours, the daily cap), found by when they may go.
        Index(
            "ix_deliveries_held",
            "held_until",
            "subscriber_id",
            sqlite_where=text("status = 'held'"),
            postgresql_where=text("status = 'held'"),
        ),
        # Who got an article, when a correction of it is to be told (written once, at
        # fan-out: a change of status leaves it alone).
        Index("ix_deliveries_article", "article_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum_column(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    # The version of the article the email carried: the id of its latest revision when its
    # content was read (0: as first published; NULL: recorded before versions were).
    revision_id: Mapped[int | None] = mapped_column(Integer)
    # Which send task holds the row (a lease renewed while its batch runs); a lease older
    # than the stale limit is taken over.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None]
    # Messages actually handed to the relay for this row (relay outages count none).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # After a temporary refusal: not before then; and failed for good once past retry_until.
    next_attempt_at: Mapped[datetime | None]
    retry_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    sent_at: Mapped[datetime | None]
    # Why it was kept back: "quiet" (an alert in quiet hours; until `held_until`), "cap" (an
    # alert past the daily cap: the next digest carries it) or "carry" (a digest's article
    # its retry no longer carried: the next digest carries it). Kept once sent, so it is not
    # counted again.
    held: Mapped[str | None] = mapped_column(String(10))
    held_until: Mapped[datetime | None]
    # Set when the article went out in a digest (None: an alert).
    digest_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("digest_runs.id", ondelete="SET NULL")
    )


# "Pending" written into the statement, not bound: PostgreSQL uses the partial index of
# pending rows only when it can see the value (a prepared statement's generic plan cannot).
DELIVERY_PENDING = Delivery.status == literal_column("'pending'")
# Rows the reader's next digest carries whatever its window and frequency (a run scoped to
# one topic aside), for the reason they still follow the article, or closes: an alert held
# past their daily cap, and an article a digest run claimed and, retried, no longer carried
# (they had moved its topic to another frequency: that digest may have gone out meanwhile).
FOR_NEXT_DIGEST = ("cap", "carry")
HELD_FOR_NEXT_DIGEST = Delivery.held.in_(FOR_NEXT_DIGEST)
# A row that is none of those (a digest's own claim).
NOT_HELD_FOR_NEXT_DIGEST = or_(Delivery.held.is_(None), Delivery.held.not_in(FOR_NEXT_DIGEST))


class NoticeKind(enum.StrEnum):
    DIGEST = "digest"  # under "Updated since we sent it" in the reader's next digest
    CORRECTION = "correction"  # a short email of its own, to a reader who got the alert


class RevisionNotice(Base):
    """That a reader is told, or was told, of one revision: one row per (revision, reader),
    which is what makes "never twice for the same change" hold. Claimed under a lease with a
    token, as deliveries are, and closed with the outcome of the email that carried it."""

    __tablename__ = "revision_notices"
    __table_args__ = (
        UniqueConstraint("revision_id", "subscriber_id"),
        Index(
            "ix_revision_notices_pending",
            "kind",
            "subscriber_id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # A reader's notices: what they were told of an article, what a batch holds.
        Index("ix_revision_notices_subscriber", "subscriber_id", "claim_token"),
        Index(
            "ix_revision_notices_claim",
            "claim_token",
            sqlite_where=text("claim_token IS NOT NULL"),
            postgresql_where=text("claim_token IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("article_revisions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    kind: Mapped[NoticeKind] = mapped_column(_enum_column(NoticeKind))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum_column(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    retry_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # The digest run that carries it (a `digest` notice).
    digest_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("digest_runs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    sent_at: Mapped[datetime | None]


class ConfirmationEmail(Base):
    """A double opt-in email owed to a reader, or the one they got: written in the same
    transaction as the signup (or change, or admin's resend) that asks for it, then claimed
    under a lease and closed with the relay's answer like every other email. One row per
    link: the nonce it carries, and for an active reader the changes it would confirm."""

    __tablename__ = "confirmation_emails"
    __table_args__ = (
        Index(
            "ix_confirmation_emails_pending",
            "subscriber_id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_confirmation_emails_subscriber", "subscriber_id", "claim_token"),
        Index(
            "ix_confirmation_emails_claim",
            "claim_token",
            sqlite_where=text("claim_token IS NOT NULL"),
            postgresql_where=text("claim_token IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum_column(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    retry_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    sent_at: Mapped[datetime | None]


CONFIRMATION_PENDING = ConfirmationEmail.status == literal_column("'pending'")


class DigestRun(Base):
    """One sending of a frequency's digests for one period (and optionally one topic).

    Unique per (frequency, period, scope): a second trigger of the same period joins this run.
    """

    __tablename__ = "digest_runs"
    __table_args__ = (UniqueConstraint("frequency", "period", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    frequency: Mapped[Frequency] = mapped_column(_enum_column(Frequency))
    period: Mapped[str] = mapped_column(String(20))
    # "" for every topic, else the slug of the one topic (and its branch) the run covers.
    scope: Mapped[str] = mapped_column(String(100), default="")
    triggered_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=now, index=True)
    finished_at: Mapped[datetime | None]
    # When a send task for this run was last put on the broker.
    queued_at: Mapped[datetime | None]


class DigestRecipient(Base):
    """A reader's digest email in one run: claimed, then sent (or skipped when empty) once."""

    __tablename__ = "digest_recipients"
    __table_args__ = (
        UniqueConstraint("run_id", "subscriber_id", "slot"),
        Index("ix_digest_recipients_run_status", "run_id", "status", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("digest_runs.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    # The due time (the reader's next_at) this digest serves: one email per reader per slot.
    slot: Mapped[datetime]
    status: Mapped[RecipientStatus] = mapped_column(
        _enum_column(RecipientStatus), default=RecipientStatus.QUEUED
    )
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    retry_until: Mapped[datetime | None]
    article_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


class DigestSchedule(Base):
    """When a reader's next digest of one frequency is due (UTC, from their zone and hour)."""

    __tablename__ = "digest_schedules"
    __table_args__ = (Index("ix_digest_schedules_due", "frequency", "next_at", "subscriber_id"),)

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    frequency: Mapped[Frequency] = mapped_column(_enum_column(Frequency), primary_key=True)
    next_at: Mapped[datetime]
    last_sent_at: Mapped[datetime | None]


class RelayStatus(Base):
    """The circuit breaker of one SMTP relay, shared by every worker: while `retry_at` is in
    the future the relay is considered down and no batch is started."""

    __tablename__ = "relay_status"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:port
    # Consecutive times the relay could not be reached or dropped us before any message.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    down_since: Mapped[datetime | None]
    retry_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_ok_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


class SoftBounce(Base):
    """A temporary refusal that outlived every retry; three within 14 days suppress the address."""

    __tablename__ = "soft_bounces"
    __table_args__ = (Index("ix_soft_bounces_subscriber_at", "subscriber_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=now)
    error: Mapped[str] = mapped_column(Text, default="")


class DeliveryCount(Base):
    """What is left of an erased reader's deliveries: anonymous counts per day and status."""

    __tablename__ = "delivery_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[DeliveryStatus] = mapped_column(_enum_column(DeliveryStatus), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Keyword(Base):
    """A word or phrase a reader follows, like "ICANN" or "TRIPS waiver".

    `words` is the phrase folded to words (lower case, no accents, no punctuation), space
    separated; `first_word` is what the index is looked up by, from the article's own words.
    """

    __tablename__ = "keywords"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "words"),
        Index("ix_keywords_lookup", "first_word", "frequency", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    phrase: Mapped[str] = mapped_column(String(100))
    words: Mapped[str] = mapped_column(String(200))
    first_word: Mapped[str] = mapped_column(String(100))
    frequency: Mapped[Frequency] = mapped_column(_enum_column(Frequency))


class Feed(Base):
    """An RSS or Atom feed polled for new articles."""

    __tablename__ = "feeds"
    __table_args__ = (Index("ix_feeds_due", "active", "next_poll_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    language_code: Mapped[str | None] = mapped_column(ForeignKey("languages.code"))
    interval_minutes: Mapped[int] = mapped_column(Integer, default=15)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # Entries older than the first poll are stored without alerting: no flood on adding a feed.
    first_polled_at: Mapped[datetime | None]
    last_polled_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime] = mapped_column(default=now)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(Integer, default=0)
    articles_created: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=now)

    @property
    def shown_url(self) -> str:
        """The address without any user name or password in it, for pages and the CLI."""
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class FeedCategory(Base):
    """A category a feed uses that maps to no topic yet, for an admin to map."""

    __tablename__ = "feed_categories"

    feed_id: Mapped[int] = mapped_column(
        ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    seen: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_at: Mapped[datetime] = mapped_column(default=now)
