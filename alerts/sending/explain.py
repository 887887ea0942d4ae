""" "What would this reader get?": for a reader and an article, whether the article reaches
them, how (an instant alert, a round-up after quiet hours, a digest), when, and why, or why
not. The same rules as the send path (matching.rule, sending.hold), asked without sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import matching
from alerts.models import (
    Article,
    Delivery,
    DeliveryStatus,
    DigestSchedule,
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from alerts.sending import hold
from alerts.topic_tree import TopicTree


@dataclass(frozen=True)
class Verdict:
    gets: bool  # the article reaches (or reached) them
    how: str  # "instant alert", "quiet-hours round-up", "daily digest", ... or "nothing"
    when: datetime | None  # when it goes (or went), where known
    why: str  # the reason, or why not, in an administrator's words


def explain(session: Session, reader: Subscriber, article: Article, at: datetime) -> Verdict:
    if reader.status is not SubscriberStatus.ACTIVE:
        why = {
            SubscriberStatus.PENDING: "they have not confirmed their address",
            SubscriberStatus.UNSUBSCRIBED: "they unsubscribed",
            SubscriberStatus.BOUNCED: "their address bounced: nothing is sent to it",
        }.get(reader.status, f"they are {reader.status.value}")
        return Verdict(False, "nothing", None, why)
    row = session.scalar(
        select(Delivery).where(
            Delivery.subscriber_id == reader.id, Delivery.article_id == article.id
        )
    )
    if row is not None:
        return _recorded(row)
    if reader.paused_until is not None and reader.paused_until > at:
        return Verdict(
            False,
            "nothing",
            None,
            f"they paused every email until {reader.paused_until:%Y-%m-%d %H:%M} UTC",
        )
    if article.language_code not in reader.language_codes:
        read = ", ".join(reader.language_codes) or "no language"
        why = f"the article is in {article.language_code}; they read {read}"
        return Verdict(False, "nothing", None, why)
    tree = TopicTree.load(session)
    scope = matching.scope(session, article, tree)
    wants = matching.interests(session, [reader.id], matching.ALL_FREQUENCIES, receiving=False)
    if reader.id not in wants or matching.match(wants[reader.id], scope, tree) is None:
        return Verdict(
            False, "nothing", None,
            "it is in none of the topics they follow and mentions none of their keywords",
        )  # fmt: skip
    alert_reason = matching.reasons(
        session, scope, [reader.id], matching.alert_frequencies(article), tree
    ).get(reader.id)
    if alert_reason is not None:
        return _alert(session, reader, article, at, _words(alert_reason))
    for frequency in (Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY):
        reason = matching.reasons(session, scope, [reader.id], (frequency,), tree).get(reader.id)
        if reason is not None:
            due = session.scalar(
                select(DigestSchedule.next_at).where(
                    DigestSchedule.subscriber_id == reader.id,
                    DigestSchedule.frequency == frequency,
                )
            )
            return Verdict(True, f"{frequency.value} digest", due, _words(reason))
    return Verdict(False, "nothing", None, "it matches none of their frequencies")


def _alert(
    session: Session, reader: Subscriber, article: Article, at: datetime, why: str
) -> Verdict:
    sent = hold.sent_today(session, reader, at)
    decision = hold.decide(reader, article, sent, at)
    if decision.hold == hold.QUIET:
        return Verdict(
            True, "quiet-hours round-up", decision.until,
            f"{why}; it comes in during their quiet hours, so it waits for their end",
        )  # fmt: skip
    if decision.hold == hold.CAP:
        return Verdict(
            True, "next digest", None,
            f"{why}; they already got {sent} instant alerts today, their daily limit "
            f"is {reader.daily_cap}",
        )  # fmt: skip
    urgent = " (urgent: it goes through quiet hours and the cap)" if article.urgent else ""
    return Verdict(True, "instant alert", at, why + urgent)


def _words(reason: matching.Reason) -> str:
    if reason.kind == "keyword":
        return f'it mentions "{reason.name}", a keyword they follow'
    return f'they follow "{reason.name}"'


def _recorded(row: Delivery) -> Verdict:
    """What the send ledger already says about them and this article."""
    kind = "digest" if row.digest_run_id is not None else "instant alert"
    if row.status is DeliveryStatus.SENT:
        how = "quiet-hours round-up" if row.held == hold.QUIET else kind
        return Verdict(True, how, row.sent_at, "already sent")
    if row.status is DeliveryStatus.HELD:
        if row.held == hold.QUIET:
            return Verdict(True, "quiet-hours round-up", row.held_until, "held in quiet hours")
        if row.held == hold.CARRY:
            return Verdict(
                True,
                "next digest",
                None,
                "held for their next digest: they changed how they follow it meanwhile",
            )
        return Verdict(True, "next digest", None, "held: their daily limit was reached")
    if row.status is DeliveryStatus.PENDING:
        return Verdict(True, kind, row.next_attempt_at, row.last_error or "being sent now")
    return Verdict(
        False, "nothing", row.updated_at, f"{row.status.value}: {row.last_error or ''}".rstrip(": ")
    )
