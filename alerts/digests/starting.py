"""Starting digests by hand (admin, API, CLI): what a run would do, starting it, and one
reader's digest as it would be now. Nothing here sends: the send tasks do.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.digests.content import DigestContent, build_contents
from alerts.digests.runs import enqueue, scope_topic_ids, start_run
from alerts.models import (
    DigestRun,
    DigestSchedule,
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from alerts.topic_tree import TopicTree


@dataclass(frozen=True)
class DryRun:
    frequency: Frequency
    scope: str
    readers: int  # active readers of the frequency (and scope)
    emails: int  # of those, readers whose digest has something new: who would get an email
    sample: DigestContent | None


def dry_run(session: Session, frequency: Frequency, scope: str = "", page: int = 500) -> DryRun:
    """What starting a run now would do; records nothing."""
    tree = TopicTree.load(session)
    scope_topic_ids(session, scope, tree)
    conditions = [
        DigestSchedule.frequency == frequency,
        Subscriber.status == SubscriberStatus.ACTIVE,
    ]
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
