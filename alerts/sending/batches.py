"""Send tasks' work: drain an article's pending alerts, or a digest run's queued readers.

A drain claims a batch, sends it through the one send loop under a heartbeat lease, and
takes the next batch, until nothing is left that may be sent now, the relay is down, or its
time slice is up; `Drain.again_in` then tells the task when to come back (None: the
reconciler will, when a retry falls due).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import db, digests, matching, revisions
from alerts.clock import now
from alerts.mail import emails, message, smtp
from alerts.models import (
    Article,
    DeliveryStatus,
    DigestRecipient,
    DigestRun,
    RecipientStatus,
)
from alerts.sending import claims, digest_claims, digest_ledger, hold, ledger, loop, relay
from alerts.sending.lease import Lease
from alerts.sending.policy import RetryPolicy
from alerts.topic_tree import TopicTree


@dataclass
class Drain:
    outcome: loop.Outcome = field(default_factory=loop.Outcome)
    more: bool = False  # stopped at the end of its slice with readers left
    next_retry_at: datetime | None = None  # the earliest retry waiting, if any

    def again_in(self, policy: RetryPolicy) -> float | None:
        """Seconds until a send task should look again; None to leave it to the reconciler
        (a retry further away than a reconciler pass, or nothing left)."""
        if self.outcome.relay_down_until is not None:
            return max((self.outcome.relay_down_until - now()).total_seconds(), 0.0)
        if self.more:
            return 0.0
        if self.next_retry_at is not None:
            wait = max((self.next_retry_at - now()).total_seconds(), 0.0)
            if wait <= policy.requeue_after.total_seconds():
                return wait
        return None


def drain_batches(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    connect: loop.Connect,
    *,
    claim_next: Callable[[], Any],
    renew: Callable[[str], Callable[[Session], int]],
    outbox: Callable[[Any], loop.Outbox],
    on_batch: Callable[[int], None] | None = None,
) -> Drain:
    """Claim a batch, send it, take the next, for alerts and digests alike: until nothing
    may be sent now, the relay is down, the lease is lost, or the task's slice is up."""
    drain = Drain()
    started = time.monotonic()
    sender = message.envelope_sender(settings.mail_from)
    relay_key = relay.key_of(settings.smtp)
    # Each step done again over a new database connection if it lost its own (a claim whose
    # commit was lost: its rows wait for its lease to go stale).
    outlasting = partial(
        db.outlasting_lost_connections, session, patience=policy.stale_after.total_seconds()
    )
    while True:
        down = outlasting(partial(relay.may_send, session, relay_key, policy))
        if down is not None:
            drain.outcome.relay_down_until = down
            break
        claim = outlasting(claim_next)
        if not claim.subscriber_ids:
            break
        # The lease is renewed from the moment of the claim: preparing the batch is part of
        # holding it.
        with Lease(
            session.get_bind().engine,  # its own connection, never the task's
            renew(claim.token),
            policy.renew_every,
            policy.stale_after.total_seconds(),
        ) as lease:
            outcome = loop.send(
                session,
                outlasting(partial(outbox, claim)),
                claim.subscriber_ids,
                settings.smtp,
                sender,
                policy,
                lease,
                connect,
            )
        drain.outcome.add(outcome)
        if on_batch is not None:
            on_batch(len(claim.subscriber_ids))
        if outcome.relay_down_until is not None or outcome.lease_lost:
            break
        if time.monotonic() - started > policy.task_slice:
            drain.more = True
            break
    return drain


class AlertOutbox:
    """One batch of one article's alerts."""

    kind = "alert"

    def __init__(
        self,
        session: Session,
        settings: emails.MailSettings,
        policy: RetryPolicy,
        article: Article,
        scope: matching.Scope,
        tree: TopicTree,
        claim: ledger.Claim,
    ) -> None:
        self.session = session
        self.settings = settings
        self.policy = policy
        self.article = article
        self.carried: dict[int, int] = {}  # reader -> the article's version their alert shows
        self.token = claim.token
        self.readers = claims.readers_of(session, claim.subscriber_ids)
        self.why = matching.reasons(
            session, scope, claim.subscriber_ids, matching.alert_frequencies(article), tree
        )
        self.shapes: emails.Shapes = {}  # the alert rendered once per language, time and reason
        self.ready: dict[int, tuple[int, bytes]] = {}  # reader -> (version, alert), prepared

    def prepare(self, key: int) -> None:
        reader, version = self.readers[key], self.article.version
        if reader.daily_cap is None:  # a capped reader's alert waits for their count
            raw = emails.alert(self.settings, self.article, reader, self.why.get(key), self.shapes)
            self.ready[key] = (version, raw)

    def forget_prepared(self) -> None:
        self.ready.clear()

    def compose(self, key: int) -> tuple[str, bytes] | None:
        reader = self.readers[key]
        current = now()
        # A capped reader is counted when their alert is about to go, under a lock: another
        # article's task may be sending them one at the same moment.
        sent = (
            hold.sent_today_locked(self.session, reader, current)
            if reader.daily_cap is not None
            else 0
        )
        decision = hold.decide(reader, self.article, sent, current)
        if decision.hold is not None:
            hold.record_held(self.session, self.token, self.article.id, key, decision)
            if decision.hold == hold.CAP:
                digests.ensure_digest(self.session, reader)
            return None
        why = self.why.get(key)
        # Read before rendering: an article reloaded (after a rolled-back connection) brings
        # its content and version together.
        self.carried[key] = version = self.article.version
        ready = self.ready.pop(key, None)
        if ready is not None and ready[0] == version and not decision.last_before_cap:
            return reader.email, ready[1]
        return reader.email, emails.alert(
            self.settings, self.article, reader, why, self.shapes, decision.last_before_cap
        )

    def sent(self, key: int) -> None:
        # Read, not popped: a record that lost its connection is made again from the start.
        ledger.record_sent(self.session, self.token, self.article.id, key, self.carried.get(key, 0))

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            ledger.record_bounced(self.session, self.token, self.article.id, key, str(rejection))
            return "bounced"
        failed = ledger.record_temporary(
            self.session,
            self.token,
            self.article.id,
            key,
            str(rejection),
            self.policy,
            about_address=rejection.recipient,
        )
        return "failed" if failed else "deferred"

    def dropped(self, key: int, error: str) -> str:
        failed = ledger.record_temporary(
            self.session, self.token, self.article.id, key, error, self.policy, False
        )
        return "failed" if failed else "deferred"

    def release(self, keys: Sequence[int], error: str) -> None:
        ledger.release(self.session, self.token, self.article.id, keys, error)


def drain_alerts(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    article_id: int,
    connect: loop.Connect = smtp.connect,
) -> Drain:
    """Send the article's pending alerts, batch after batch."""
    found = revisions.load(session, Article.id == article_id)
    if not found:
        return Drain()
    [article] = found
    # Worked out once per task, and only once there is a batch to send.
    tree = lru_cache(maxsize=1)(lambda: TopicTree.load(session))
    scope = lru_cache(maxsize=1)(lambda: matching.scope(session, article, tree()))
    drain = drain_batches(
        session,
        settings,
        policy,
        connect,
        claim_next=lambda: ledger.claim_next(session, article_id, policy),
        renew=lambda token: partial(ledger.renew, token=token, article_id=article_id),
        outbox=lambda claim: AlertOutbox(
            session, settings, policy, article, scope(), tree(), claim
        ),
    )
    drain.next_retry_at = ledger.next_retry_at(session, article_id)
    session.commit()
    return drain


class DigestOutbox:
    """One batch of one run's digests."""

    kind = "digest"

    def __init__(
        self,
        session: Session,
        settings: emails.MailSettings,
        policy: RetryPolicy,
        run: DigestRun,
        claim: digest_claims.RecipientClaim,
        render: emails.DigestRenderer,
        tree: TopicTree,
    ) -> None:
        self.session = session
        self.policy = policy
        self.run_id = run.id
        self.frequency = run.frequency
        self.claim = claim
        self.render = render
        built_at = now()
        self.contents = digests.build_contents(
            session, run.frequency, claim.subscriber_ids, run.scope, tree, run_id=run.id
        )
        # The version of each article as built: what its ledger rows record.
        self.versions = {
            article_id: article.version
            for content in self.contents.values()
            for article_id, article in content.articles.items()
        }
        self.held = digest_claims.claim_articles(
            session,
            run.id,
            {
                subscriber_id: content.article_ids
                for subscriber_id, content in self.contents.items()
            },
            claim.token,
            carries_held_from=None if run.scope else built_at,
            versions=self.versions,
        )
        self.told = revisions.claim_for_digest(session, run.id, self.contents, claim.token)
        self.drift: dict[int, dict[int, int]] = {}  # reader -> article -> version sent
        self.ready: dict[int, tuple[dict[int, int], bytes]] = {}  # versions shown, digest

    def prepare(self, key: int) -> None:
        content = self.contents.get(key)
        if content is not None:
            content.keep_only(self.held.get(key, []))
            if not content.empty:
                self.ready[key] = (_shown(content), self.render.message(content, self.run_id))

    def forget_prepared(self) -> None:
        self.ready.clear()

    def _notices(self, key: int, status: DeliveryStatus | None, error: str | None = None) -> None:
        """Close (or, with None, hand back) the notices this batch holds for the reader: the
        revisions their digest told of, and any an earlier attempt of the run left."""
        if key in self.told:
            revisions.close_digest_notices(self.session, key, self.claim.token, status, error)

    def _finish(self, key: int, status: RecipientStatus, **kwargs: object) -> None:
        content = self.contents[key]
        digest_ledger.finish(
            self.session,
            self.run_id,
            content.subscriber,
            self.claim.token,
            status,
            frequency=self.frequency,
            slot=self.claim.slots.get(key),
            until=content.until,
            **kwargs,  # type: ignore[arg-type]
        )

    def compose(self, key: int) -> tuple[str, bytes] | None:
        content = self.contents.get(key)
        if content is None:
            digest_ledger.skip_inactive(self.session, self.run_id, key, self.claim.token)
            revisions.skip_for_run(self.session, self.run_id, key)
            return None
        content.keep_only(self.held.get(key, []))
        if content.empty:
            self._finish(key, RecipientStatus.SKIPPED)  # nothing new: no email
            self._notices(key, DeliveryStatus.SKIPPED, "not in the digest")
            return None
        # An article reloaded since the build (a rolled-back connection) shows its newer
        # version: recorded as such when it is sent.
        shown = _shown(content)
        ready = self.ready.pop(key, None)
        raw = ready[1] if ready and ready[0] == shown else self.render.message(content, self.run_id)
        self.drift[key] = {a: v for a, v in shown.items() if v != self.versions.get(a)}
        return content.subscriber.email, raw

    def sent(self, key: int) -> None:
        if self.drift.get(key):
            revisions.record_versions(self.session, key, self.claim.token, self.drift[key])
        self._finish(
            key,
            RecipientStatus.SENT,
            article_count=len(self.contents[key].article_ids),
            delivery_status=DeliveryStatus.SENT,
            alone=key not in self.told,  # else its notices are closed in the same transaction
        )
        self._notices(key, DeliveryStatus.SENT)

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            error = str(rejection)
            self._finish(
                key, RecipientStatus.FAILED, error=error, delivery_status=DeliveryStatus.BOUNCED
            )
            self._notices(key, DeliveryStatus.BOUNCED, error)
            from alerts.sending import suppression

            suppression.suppress(self.session, key, error)
            return "bounced"
        return self._defer(key, str(rejection), rejection.recipient)

    def dropped(self, key: int, error: str) -> str:
        return self._defer(key, error, False)

    def _defer(self, key: int, error: str, about_address: bool) -> str:
        failed = digest_ledger.defer(
            self.session,
            self.run_id,
            self.contents[key].subscriber,
            self.claim.token,
            error,
            self.policy,
            about_address,
            frequency=self.frequency,
        )
        self._notices(key, DeliveryStatus.FAILED if failed else None, error)
        return "failed" if failed else "deferred"

    def release(self, keys: Sequence[int], error: str) -> None:
        digest_ledger.release(self.session, self.run_id, keys, self.claim.token, error)
        for key in keys:
            self._notices(key, None, error)


def _shown(content: digests.DigestContent) -> dict[int, int]:
    """The version of each article a digest shows, as loaded now."""
    return {i.article.id: i.article.version for _, items in content.groups for i in items}


def drain_digests(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    run_id: int,
    connect: loop.Connect = smtp.connect,
    render: emails.DigestRenderer | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Drain:
    """Send the run's queued digests, batch after batch; each reader at most once."""
    run = session.get(DigestRun, run_id)
    if run is None:
        return Drain()
    render = render or emails.DigestRenderer(settings)
    tree = TopicTree.load(session)
    drain = drain_batches(
        session,
        settings,
        policy,
        connect,
        claim_next=lambda: digest_claims.claim_next(session, run_id, policy),
        renew=lambda token: partial(digest_claims.renew, run_id=run_id, token=token),
        outbox=lambda claim: DigestOutbox(session, settings, policy, run, claim, render, tree),
        on_batch=on_batch,
    )
    drain.next_retry_at = session.scalar(
        select(func.min(DigestRecipient.next_attempt_at)).where(
            DigestRecipient.run_id == run_id, DigestRecipient.status == RecipientStatus.QUEUED
        )
    )
    digests.finish_if_done(session, run)
    session.commit()
    return drain
