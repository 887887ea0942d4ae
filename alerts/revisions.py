"""Articles that change after readers got them: each change to a title or summary is an
`ArticleRevision`, and each reader told of it has one `RevisionNotice`, never two.

A reader who got the article before the change sees it once more in their next digest,
under "Updated since we sent it", with what changed. A change the publisher marks as a
correction is also told, at once, to every reader who got the article as an instant alert:
one short email each (`alerts.sending.corrections`), and then not again in a digest.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, func, insert, literal, not_, select, update
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.db import insert_ignoring_duplicates, rowcount
from alerts.models import (
    Article,
    ArticleRevision,
    Delivery,
    DeliveryStatus,
    NoticeKind,
    RevisionNotice,
    Subscriber,
)

MAX_UPDATES = 20  # shown in one digest, newest change first

_notices = cast(Table, RevisionNotice.__table__)


def record(
    session: Session,
    article: Article,
    old_title: str,
    old_summary_text: str,
    correction: str | None,
) -> ArticleRevision | None:
    """Record a change of the article's title or summary (already applied to `article`);
    None when neither changed (a publisher sending the same article again changes nothing,
    a correction flag included). A correction inserts, in the same transaction, one notice
    per reader who got the article as an instant alert."""
    if old_title == article.title and old_summary_text == article.summary_text:
        return None
    revision = ArticleRevision(
        article_id=article.id,
        old_title=old_title,
        new_title=article.title,
        old_summary_text=old_summary_text,
        new_summary_text=article.summary_text,
        correction=correction is not None,
        note=correction or "",
        created_at=now(),
    )
    session.add(revision)
    session.flush()
    if correction is not None:
        current = now()
        got_alert = select(
            literal(revision.id),
            Delivery.subscriber_id,
            literal(NoticeKind.CORRECTION.value),
            literal(DeliveryStatus.PENDING.value),
            literal(0),
            literal(current, ArticleRevision.created_at.type),
            literal(current, ArticleRevision.created_at.type),
        ).where(
            Delivery.article_id == article.id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.digest_run_id.is_(None),  # an alert (or a quiet-hours round-up)
            # Unless they turned correction emails off (a digest of theirs tells them).
            Delivery.subscriber_id.in_(select(Subscriber.id).where(Subscriber.corrections)),
        )
        session.execute(
            insert(_notices).from_select(
                [
                    "revision_id",
                    "subscriber_id",
                    "kind",
                    "status",
                    "attempts",
                    "created_at",
                    "updated_at",
                ],
                got_alert,
            )
        )
    return revision


def corrections_owed(session: Session, revision_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                RevisionNotice.revision_id == revision_id,
                RevisionNotice.kind == NoticeKind.CORRECTION,
            )
        )
        or 0
    )


@dataclass
class Update:
    """An article a reader was sent, changed since: what it was then, what it is now."""

    article: Article
    old_title: str  # the title the reader was sent
    old_summary_text: str
    revised_at: datetime  # the latest change
    correction: bool = False
    notes: list[str] = field(default_factory=list)
    revision_ids: list[int] = field(default_factory=list)

    @property
    def title_changed(self) -> bool:
        return self.old_title != self.article.title

    @property
    def summary_changed(self) -> bool:
        return self.old_summary_text != self.article.summary_text


def updates_for(
    session: Session,
    subscriber_ids: Collection[int],
    since: dict[int, datetime],
    until: datetime,
) -> dict[int, list[Update]]:
    """Each reader's updates for a digest covering `since[reader]` to `until`: the articles
    they were sent before a change made in that window and not told of yet, newest change
    first. Costs one query when nothing changed in the window."""
    if not since:
        return {}
    revisions = list(
        session.scalars(
            select(ArticleRevision)
            .where(
                ArticleRevision.created_at >= min(since.values()),
                ArticleRevision.created_at <= until,
            )
            .order_by(ArticleRevision.created_at, ArticleRevision.id)
        )
    )
    if not revisions:
        return {}
    readers = list(subscriber_ids)
    sent_at = {
        (subscriber_id, article_id): moment
        for subscriber_id, article_id, moment in session.execute(
            select(Delivery.subscriber_id, Delivery.article_id, Delivery.sent_at).where(
                Delivery.subscriber_id.in_(readers),
                Delivery.article_id.in_({r.article_id for r in revisions}),
                Delivery.status == DeliveryStatus.SENT,
            )
        )
    }
    if not sent_at:
        return {}
    # Told already, or being told by a correction email. A digest's notice still pending
    # (a run that died, or another run's) is claimed again; the unique row decides who wins.
    told = set(
        session.execute(
            select(RevisionNotice.subscriber_id, RevisionNotice.revision_id).where(
                RevisionNotice.subscriber_id.in_(readers),
                RevisionNotice.revision_id.in_([r.id for r in revisions]),
                not_(
                    and_(
                        RevisionNotice.kind == NoticeKind.DIGEST,
                        RevisionNotice.status == DeliveryStatus.PENDING,
                    )
                ),
            )
        ).all()
    )
    articles = {
        article.id: article
        for article in session.scalars(
            select(Article).where(Article.id.in_({r.article_id for r in revisions}))
        )
    }
    result: dict[int, list[Update]] = {}
    for subscriber_id in readers:
        by_article: dict[int, Update] = {}
        for revision in revisions:
            got = sent_at.get((subscriber_id, revision.article_id))
            if (
                got is None
                or got >= revision.created_at
                or revision.created_at < since.get(subscriber_id, until)
                or (subscriber_id, revision.id) in told
            ):
                continue
            item = by_article.get(revision.article_id)
            if item is None:  # the oldest change holds what the reader was sent
                item = by_article[revision.article_id] = Update(
                    articles[revision.article_id],
                    revision.old_title,
                    revision.old_summary_text,
                    revision.created_at,
                )
            item.revised_at = revision.created_at
            item.correction = item.correction or revision.correction
            if revision.note:
                item.notes.append(revision.note)
            item.revision_ids.append(revision.id)
        # Changed and changed back: nothing to tell.
        changed = [u for u in by_article.values() if u.title_changed or u.summary_changed]
        if changed:
            changed.sort(key=lambda u: (u.revised_at, u.article.id), reverse=True)
            result[subscriber_id] = changed[:MAX_UPDATES]
    return result


def claim_for_digest(
    session: Session,
    run_id: int,
    readers: Collection[int],
    wanted: dict[int, list[int]],
    token: str,
) -> dict[int, set[int]]:
    """Record that these digests tell of these revisions (reader -> revision ids); returns
    what the batch holds per reader: the revisions each digest may tell of (none another
    email tells of), and the notices an earlier attempt of the run left for its `readers`
    (a batch holds those, to close them with the digest's outcome). Commits."""
    current = now()
    rows = [
        {
            "revision_id": revision_id,
            "subscriber_id": subscriber_id,
            "kind": NoticeKind.DIGEST.value,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "digest_run_id": run_id,
            "claim_token": token,
            "claimed_at": current,
            "created_at": current,
            "updated_at": current,
        }
        for subscriber_id, revision_ids in wanted.items()
        for revision_id in revision_ids
    ]
    if rows:
        session.execute(insert_ignoring_duplicates(session, _notices), rows)
    # An earlier attempt of this run left them: ours now (we hold these readers).
    took = rowcount(
        session.execute(
            update(RevisionNotice)
            .where(
                RevisionNotice.kind == NoticeKind.DIGEST,
                RevisionNotice.subscriber_id.in_(list(readers)),
                RevisionNotice.digest_run_id == run_id,
                RevisionNotice.status == DeliveryStatus.PENDING,
            )
            .values(claim_token=token, claimed_at=current, updated_at=current)
            .execution_options(synchronize_session=False)
        )
    )
    held: dict[int, set[int]] = {}
    if not took:
        session.commit()
        return held
    for subscriber_id, revision_id in session.execute(
        select(RevisionNotice.subscriber_id, RevisionNotice.revision_id).where(
            RevisionNotice.subscriber_id.in_(list(readers)), RevisionNotice.claim_token == token
        )
    ):
        held.setdefault(subscriber_id, set()).add(revision_id)
    session.commit()
    return held


def close_digest_notices(
    session: Session,
    subscriber_id: int,
    token: str,
    status: DeliveryStatus | None,
    error: str | None = None,
) -> int:
    """The outcome of a digest that told of revisions: sent, failed, bounced; None hands them
    back (the digest is retried, and tells of them again)."""
    current = now()
    values: dict[str, object] = {"claim_token": None, "updated_at": current}
    if status is not None:
        values.update(status=status, attempts=RevisionNotice.attempts + 1)
        if status is DeliveryStatus.SENT:
            values["sent_at"] = current
    if error:
        values["last_error"] = error[:2000]
    return rowcount(
        session.execute(
            update(RevisionNotice)
            .where(
                RevisionNotice.subscriber_id == subscriber_id,
                RevisionNotice.claim_token == token,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )


def told_in_digest(session: Session, subscriber_id: int, run_id: int) -> list[Article]:
    """The changed articles a reader's digest of this run told of (for its browser view)."""
    return list(
        session.scalars(
            select(Article)
            .join(ArticleRevision, ArticleRevision.article_id == Article.id)
            .join(RevisionNotice, RevisionNotice.revision_id == ArticleRevision.id)
            .where(
                RevisionNotice.subscriber_id == subscriber_id,
                RevisionNotice.digest_run_id == run_id,
                RevisionNotice.status == DeliveryStatus.SENT,
            )
            .distinct()
            .order_by(Article.published_at.desc(), Article.id.desc())
        )
    )


def skip_for_run(session: Session, run_id: int, subscriber_id: int) -> None:
    """The reader left before their digest went: what it would have told is owed no more."""
    session.execute(
        update(RevisionNotice)
        .where(
            RevisionNotice.subscriber_id == subscriber_id,
            RevisionNotice.digest_run_id == run_id,
            RevisionNotice.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.SKIPPED, claim_token=None, last_error="not active")
        .execution_options(synchronize_session=False)
    )
