"""Digest runs: one per frequency and period (and topic scope), the readers queued in it,
and how far it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, exists, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.db import insert_ignoring_duplicates
from alerts.digests.schedules import period_of
from alerts.models import (
    DigestRecipient,
    DigestRun,
    DigestSchedule,
    Frequency,
    RecipientStatus,
    Subscriber,
    Subscription,
)
from alerts.topic_tree import TopicTree


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


def scope_topic_ids(
    session: Session, scope: str, tree: TopicTree | None = None
) -> tuple[set[int], set[int]] | None:
    """For a run restricted to one topic: (that topic and its branch, its ancestors).

    Raises:
        UnknownTopic: no topic has the slug `scope`.
    """
    if not scope:
        return None
    tree = tree or TopicTree.load(session)
    topic = tree.by_slug(scope)
    return tree.branch(topic.id), tree.ancestors(topic.id) - {topic.id}


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
    # Started by hand: every reader of the frequency, those served earlier in this period
    # too (their row is for another slot): each gets what arrived since their last digest,
    # and a reader with nothing new is skipped, not emailed.
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
    once per slot, so a reader whose next slot falls in the same UTC day (a change of daylight
    saving time) is taken again for that slot. A reader sent to by hand before their slot is
    recorded at the time of sending, so their schedule keeps its slot (the sent digest moves
    it to the first slot after now, which is that same slot).
    """
    # A reader's regular slot, or for a send by hand ahead of it, now: the digest goes out
    # now and the regular one still comes at its time, with what arrived since.
    current = literal(now(), DigestSchedule.next_at.type)
    slot = (
        DigestSchedule.next_at
        if due_only
        else case((DigestSchedule.next_at > current, current), else_=DigestSchedule.next_at)
    )
    readers = (
        select(
            literal(run.id),
            DigestSchedule.subscriber_id,
            slot,
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
    """How far the run is; reads only."""
    rows = session.execute(
        select(DigestRecipient.status, func.count())
        .where(DigestRecipient.run_id == run.id)
        .group_by(DigestRecipient.status)
    )
    return RunProgress(run, {str(status): int(number) for status, number in rows})


def finish_if_done(session: Session, run: DigestRun) -> RunProgress:
    """Stamp `finished_at` once no reader is left queued (the send task's last step)."""
    result = progress(session, run)
    if result.done and result.total and run.finished_at is None:
        run.finished_at = now()
    return result


def existing_run(session: Session, frequency: Frequency, scope: str) -> DigestRun | None:
    return session.scalar(
        select(DigestRun).where(
            DigestRun.frequency == frequency,
            DigestRun.period == period_of(frequency, now()),
            DigestRun.scope == scope,
        )
    )
