"""Articles that change after readers got them: each change to a title or summary is an
`ArticleRevision`, and each reader told of it has one `RevisionNotice`, never two.

Every email records the version of each article it carried (`deliveries.revision_id`, from
`Article.version`, loaded in the same statement as the content), so "who got an older
version" is exact whatever was being sent while the change was made. A reader who got an
older version sees the article once more in their next digest, under "Updated since we sent
it", from what they were sent to what it is now. A change the publisher marks as a
correction is also told to every reader who got it as an instant alert: one short email each
(`alerts.sending.corrections`), and then not again in a digest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    delete,
    func,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.db import insert_ignoring_duplicates, rowcount
from alerts.models import (
    Article,
    ArticleRevision,
    Delivery,
    DeliveryStatus,
    NoticeKind,
    RevisionNotice,
)

MAX_UPDATES = 20  # shown in a digest email, newest change first (its web page shows all)
UPDATE_WINDOW = timedelta(days=31)  # changes older than this are not told any more

_notices = cast(Table, RevisionNotice.__table__)


def load(session: Session, condition: ColumnElement[bool]) -> list[Article]:
    """Articles as they are now, newest first; objects the session held are refreshed. Each
    comes with its `version`, read in the same statement as its content."""
    return list(
        session.scalars(
            select(Article)
            .where(condition)
            .order_by(Article.published_at.desc(), Article.id.desc())
            .execution_options(populate_existing=True)
        )
    )


def record(
    session: Session,
    article: Article,
    old_title: str,
    old_summary_text: str,
    correction: str | None,
) -> ArticleRevision | None:
    """Record a change of the article's title or summary (already applied to `article`);
    None when neither changed (a publisher sending the same article again changes nothing,
    a correction flag included). A correction's emails are found and sent by
    `alerts.sending.corrections`, once this commits."""
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
    return revision


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


def told_up_to(
    session: Session,
    subscriber_ids: Collection[int],
    article_ids: Collection[int],
    before: int | None = None,
) -> dict[tuple[int, int], int]:
    """(reader, article) -> the latest revision (before `before`) they were told of, or are
    being told of by a correction email (a digest's notice still pending is not yet told: it
    may be retried)."""
    return {
        (subscriber_id, article_id): int(latest)
        for subscriber_id, article_id, latest in session.execute(
            select(
                RevisionNotice.subscriber_id,
                ArticleRevision.article_id,
                func.max(RevisionNotice.revision_id),
            )
            .join(ArticleRevision, ArticleRevision.id == RevisionNotice.revision_id)
            .where(
                db.among(session, RevisionNotice.subscriber_id, list(subscriber_ids)),
                ArticleRevision.article_id.in_(list(article_ids)),
                RevisionNotice.status.not_in([DeliveryStatus.SKIPPED]),
                RevisionNotice.revision_id < before if before is not None else true(),
                not_(
                    and_(
                        RevisionNotice.kind == NoticeKind.DIGEST,
                        RevisionNotice.status == DeliveryStatus.PENDING,
                    )
                ),
            )
            .group_by(RevisionNotice.subscriber_id, ArticleRevision.article_id)
        )
    }


def updates_for(
    session: Session, subscriber_ids: Collection[int], until: datetime
) -> dict[int, list[Update]]:
    """Each reader's updates for a digest built at `until`: the articles they were sent in an
    older version than the one there is now, changed in the last `UPDATE_WINDOW` and not
    told of yet, newest change first. One query when nothing changed lately."""
    revisions = list(
        session.scalars(
            select(ArticleRevision)
            .where(ArticleRevision.created_at >= until - UPDATE_WINDOW)
            .order_by(ArticleRevision.id)
        )
    )
    if not revisions or not subscriber_ids:
        return {}
    readers = list(subscriber_ids)
    article_ids = {revision.article_id for revision in revisions}
    carried = {
        (subscriber_id, article_id): int(stamp or 0)
        for subscriber_id, article_id, stamp in session.execute(
            select(Delivery.subscriber_id, Delivery.article_id, Delivery.revision_id).where(
                db.among(session, Delivery.subscriber_id, readers),
                Delivery.article_id.in_(article_ids),
                Delivery.status == DeliveryStatus.SENT,
            )
        )
    }
    if not carried:
        return {}
    told = told_up_to(session, readers, {article_id for _, article_id in carried})
    current = {
        article.id: article for article in load(session, Article.id.in_({a for _, a in carried}))
    }
    by_article: dict[int, list[ArticleRevision]] = {}
    for revision in revisions:
        by_article.setdefault(revision.article_id, []).append(revision)
    result: dict[int, list[Update]] = {}
    for (subscriber_id, article_id), stamp in carried.items():
        if article_id not in current:
            continue
        article = current[article_id]
        base = max(stamp, told.get((subscriber_id, article_id), 0))
        # Changes after the version they got, up to the one this digest shows.
        news = [r for r in by_article[article_id] if base < r.id <= article.version]
        if not news:
            continue
        update = Update(article, news[0].old_title, news[0].old_summary_text, news[-1].created_at)
        update.correction = any(r.correction for r in news)
        update.notes = [r.note for r in news if r.note]
        update.revision_ids = [r.id for r in news]
        if update.title_changed or update.summary_changed:  # not changed and changed back
            result.setdefault(subscriber_id, []).append(update)
    for updates in result.values():
        updates.sort(key=lambda u: (u.revised_at, u.article.id), reverse=True)
    return result


def claim_for_digest(
    session: Session, run_id: int, contents: Mapping[int, Any], token: str
) -> dict[int, set[int]]:
    """Record that a batch's digests (reader -> digests.DigestContent) tell of their
    updates, and settle what each tells; returns the revisions each digest tells of. Commits.

    A digest keeps an update only when it holds every one of its changes (another email
    holds part of them, and tells them whole); the notices it holds and does not tell (of
    updates it dropped, or left by an earlier attempt of the run and no longer news) are
    given back, so whichever email tells them later can. All is settled here, before any
    email goes: a message retried after a broken connection tells the same."""
    current = now()
    readers = list(contents)
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
        for subscriber_id, content in contents.items()
        for update in content.updates
        for revision_id in update.revision_ids
    ]
    if rows:
        session.execute(insert_ignoring_duplicates(session, _notices), rows)
    elif not readers or not session.scalar(
        select(RevisionNotice.id)
        .where(
            RevisionNotice.kind == NoticeKind.DIGEST,
            RevisionNotice.status == DeliveryStatus.PENDING,
            db.among(session, RevisionNotice.subscriber_id, readers),
            RevisionNotice.digest_run_id == run_id,
        )
        .limit(1)
    ):
        return {}  # nothing to tell, nothing left by an earlier attempt: no write
    # An earlier attempt of this run left them: ours now (we hold these readers).
    session.execute(
        update(RevisionNotice)
        .where(
            RevisionNotice.kind == NoticeKind.DIGEST,
            db.among(session, RevisionNotice.subscriber_id, readers),
            RevisionNotice.digest_run_id == run_id,
            RevisionNotice.status == DeliveryStatus.PENDING,
        )
        .values(claim_token=token, claimed_at=current, updated_at=current)
        .execution_options(synchronize_session=False)
    )
    held: dict[int, set[int]] = {}
    for subscriber_id, revision_id in session.execute(
        select(RevisionNotice.subscriber_id, RevisionNotice.revision_id).where(
            db.among(session, RevisionNotice.subscriber_id, readers),
            RevisionNotice.claim_token == token,
        )
    ):
        held.setdefault(subscriber_id, set()).add(revision_id)
    told: dict[int, set[int]] = {}
    for subscriber_id, revision_ids in held.items():
        told[subscriber_id] = contents[subscriber_id].keep_updates(revision_ids)
        if revision_ids - told[subscriber_id]:
            give_back(session, subscriber_id, token, sorted(revision_ids - told[subscriber_id]))
    for subscriber_id, content in contents.items():
        if subscriber_id not in held:
            content.keep_updates(())
    session.commit()
    return told


def give_back(session: Session, subscriber_id: int, token: str, revision_ids: list[int]) -> None:
    """Notices a digest holds but will not tell (another email holds part of the same
    change): deleted, so whichever email tells the whole change can take them."""
    session.execute(
        delete(RevisionNotice)
        .where(
            RevisionNotice.subscriber_id == subscriber_id,
            RevisionNotice.claim_token == token,
            RevisionNotice.revision_id.in_(revision_ids),
        )
        .execution_options(synchronize_session=False)
    )


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


def told_in_digest(
    session: Session, subscriber_id: int, run_id: int
) -> list[tuple[Article, datetime]]:
    """The changed articles a reader's digest of this run told of, each with when it last
    changed (for its browser view), latest change first."""
    rows = session.execute(
        select(Article, func.max(ArticleRevision.created_at).label("changed"))
        .join(ArticleRevision, ArticleRevision.article_id == Article.id)
        .join(RevisionNotice, RevisionNotice.revision_id == ArticleRevision.id)
        .where(
            RevisionNotice.subscriber_id == subscriber_id,
            RevisionNotice.digest_run_id == run_id,
            RevisionNotice.status == DeliveryStatus.SENT,
        )
        .group_by(Article.id)
        .order_by(func.max(ArticleRevision.created_at).desc())
    ).all()
    return [(article, changed) for article, changed in rows]


def record_versions(
    session: Session, subscriber_id: int, token: str, versions: dict[int, int]
) -> None:
    """A digest showed these articles in another version than it was built with: its rows
    record the version sent."""
    for article_id, version in versions.items():
        session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id == subscriber_id,
                Delivery.article_id == article_id,
                Delivery.claim_token == token,
            )
            .values(revision_id=version)
            .execution_options(synchronize_session=False)
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
