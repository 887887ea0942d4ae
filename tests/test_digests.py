"""Digests: each reader at their own hour, the right articles once, one run per period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from alerts import clock, digests, tokens
from alerts.clock import now
from alerts.mail.sink import MailSink
from alerts.models import (
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    DigestRun,
    DigestSchedule,
    Frequency,
    RecipientStatus,
    Subscriber,
    Subscription,
    Topic,
)
from alerts.sending import digest_claims, digest_ledger, explain
from alerts.sending.policy import RetryPolicy
from worker import tasks

import factories
from support import CLOCK

DAILY, WEEKLY, MONTHLY = Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY
# A Monday, 00:00 UTC: 09:00 on Monday in Tokyo, 19:00 on Sunday in New York.
MONDAY = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("frequency", "zone", "after", "expected"),
    [
        (DAILY, "Asia/Tokyo", utc(2026, 11, 2, 0, 0), utc(2026, 11, 2, 23, 0)),
        (DAILY, "America/New_York", utc(2026, 11, 2, 0, 0), utc(2026, 11, 2, 13, 0)),
        (DAILY, "UTC", utc(2026, 11, 2, 8, 0), utc(2026, 11, 3, 8, 0)),
        # New York leaves daylight saving on 1 November 2026: 08:00 EDT is 12:00 UTC.
        (DAILY, "America/New_York", utc(2026, 10, 31, 13, 0), utc(2026, 11, 1, 13, 0)),
        (DAILY, "America/New_York", utc(2026, 10, 30, 13, 0), utc(2026, 10, 31, 12, 0)),
        (WEEKLY, "Europe/Paris", utc(2026, 11, 2, 7, 30), utc(2026, 11, 9, 7, 0)),
        (WEEKLY, "Europe/Paris", utc(2026, 11, 2, 6, 30), utc(2026, 11, 2, 7, 0)),
        (MONTHLY, "UTC", utc(2026, 11, 2, 0, 0), utc(2026, 12, 1, 8, 0)),
        (MONTHLY, "Asia/Tokyo", utc(2026, 12, 31, 22, 0), utc(2026, 12, 31, 23, 0)),
        (DAILY, "Not/AZone", utc(2026, 11, 2, 0, 0), utc(2026, 11, 2, 8, 0)),
    ],
)
def test_next_send_time(
    frequency: Frequency, zone: str, after: datetime, expected: datetime
) -> None:
    assert digests.next_send_time(frequency, zone, 8, 0, after) == expected


def test_periods() -> None:
    at = utc(2026, 11, 28, 10, 0)
    assert digests.period_of(DAILY, at) == "2026-11-28"
    assert digests.period_of(WEEKLY, at) == "2026-W48"
    assert digests.period_of(MONTHLY, at) == "2026-11"


def one_reader_run(session: Session, frozen_clock: Any) -> tuple[Subscriber, Any, DigestRun]:
    """At 08:00, a daily reader of WIPO, an article of 07:00, and a run with them queued."""
    frozen_clock(utc(2026, 11, 2, 8, 0))
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    article = factories.article(session, published_at=utc(2026, 11, 2, 7, 0), topics=["wipo"])
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    return reader, article, run


@pytest.fixture
def monday(frozen_clock: Any) -> Any:
    frozen_clock(MONDAY)
    return frozen_clock


def tick(app: Flask, at: datetime) -> None:
    """Move the clock and run what beat runs every few minutes."""
    CLOCK.freeze(at)
    with app.app_context():
        tasks.run_due_digests()


def test_each_reader_gets_the_daily_digest_at_their_own_8am(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    tokyo = factories.subscriber(session, ["wipo"], frequency=DAILY, timezone="Asia/Tokyo")
    new_york = factories.subscriber(session, ["wipo"], frequency=DAILY, timezone="America/New_York")
    factories.article(
        session, published_at=MONDAY + timedelta(minutes=10), topics=["wipo"], title="Geneva"
    )

    tick(app, utc(2026, 11, 2, 12, 55))  # 07:55 in New York, 21:55 in Tokyo
    assert sink.store.all() == []
    tick(app, utc(2026, 11, 2, 13, 0))  # 08:00 in New York
    assert [m.recipients for m in sink.store.all()] == [[new_york.email]]
    tick(app, utc(2026, 11, 2, 22, 55))  # 07:55 on Tuesday in Tokyo
    assert len(sink.store.all()) == 1
    tick(app, utc(2026, 11, 2, 23, 0))  # 08:00 in Tokyo
    assert sorted(m.recipients[0] for m in sink.store.all()) == sorted(
        [tokyo.email, new_york.email]
    )
    [message] = sink.store.to(new_york.email)
    assert message.subject == "IP Policy Watch · Your daily news alert: 1 new article"
    assert message.parsed()["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The next day brings nothing new: no second digest.
    tick(app, utc(2026, 11, 3, 13, 0))
    tick(app, utc(2026, 11, 3, 23, 0))
    assert len(sink.store.all()) == 2


def test_weekly_once_a_week_and_monthly_once_a_month(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    weekly = factories.subscriber(session, ["wipo"], frequency=WEEKLY)
    monthly = factories.subscriber(session, ["wipo"], frequency=MONTHLY)
    start = MONDAY
    for day in range(0, 62):
        at = start + timedelta(days=day, hours=8)
        CLOCK.freeze(at - timedelta(hours=1))
        factories.article(
            session, published_at=at - timedelta(hours=1), topics=["wipo"], title=f"Day {day}"
        )
        tick(app, at)
    weekly_mail = sink.store.to(weekly.email)
    monthly_mail = sink.store.to(monthly.email)
    assert len(weekly_mail) == 9  # Mondays 2 Nov .. 28 Dec
    assert len(monthly_mail) == 2  # 1 December, 1 January
    assert weekly_mail[1].subject == "IP Policy Watch · Your weekly news alert: 7 new articles"
    # 2 November to 1 December 07:00: the articles of the 1st, before 08:00, are in it too.
    assert monthly_mail[0].subject == "IP Policy Watch · Your monthly news alert: 30 new articles"


def test_an_empty_period_sends_nothing(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    factories.article(session, published_at=MONDAY + timedelta(hours=1), topics=["patents"])
    tick(app, utc(2026, 11, 2, 8, 0))
    assert sink.store.all() == []
    session.expire_all()
    [recipient] = session.scalars(select(DigestRecipient)).all()
    assert recipient.status is RecipientStatus.SKIPPED
    schedule = session.get(DigestSchedule, (reader.id, DAILY))
    assert schedule is not None and schedule.next_at == utc(2026, 11, 3, 8, 0)


def test_two_triggers_of_one_period_make_one_run(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    factories.subscriber(session, ["wipo"], frequency=DAILY)
    factories.article(session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"])
    tick(app, utc(2026, 11, 2, 8, 0))
    tick(app, utc(2026, 11, 2, 8, 5))
    CLOCK.freeze(utc(2026, 11, 2, 9, 0))
    first, created = digests.start_run(session, DAILY, "", "admin")
    assert not created
    session.commit()
    assert session.scalar(select(func.count()).select_from(DigestRun)) == 1
    assert len(sink.store.all()) == 1
    assert first.period == "2026-11-02"


def test_an_article_matching_two_topics_appears_once_grouped_newest_first(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    reader = factories.subscriber(
        session, ["wipo", "health-ip", "venues", "copyright"], frequency=DAILY
    )
    factories.article(
        session,
        published_at=MONDAY + timedelta(hours=1),
        topics=["wipo", "health-ip"],
        title="Pandemic treaty at WIPO",
    )
    factories.article(
        session,
        published_at=MONDAY + timedelta(hours=2),
        topics=["wto-trips"],
        title="TRIPS waiver",
    )
    factories.article(
        session,
        published_at=MONDAY + timedelta(hours=3),
        topics=["copyright"],
        title="Broadcasting treaty",
    )
    tick(app, utc(2026, 11, 2, 8, 0))
    [message] = sink.store.to(reader.email)
    text = message.body("plain")
    assert text.count("Pandemic treaty at WIPO") == 1
    assert message.subject == "IP Policy Watch · Your daily news alert: 3 new articles"
    # Sections first (site order), then Venues with its newest article first.
    assert text.index("== Copyright ==") < text.index("== Venues ==")
    assert text.index("TRIPS waiver") < text.index("Pandemic treaty at WIPO")
    assert 'You follow "WIPO".' in text and 'You follow "Venues".' in text


def test_at_most_50_articles_then_and_n_more(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    for number in range(53):
        factories.article(
            session,
            published_at=MONDAY + timedelta(minutes=number + 1),
            topics=["wipo"],
            title=f"Story {number}",
        )
    tick(app, utc(2026, 11, 2, 8, 0))
    [message] = sink.store.to(reader.email)
    text = message.body("plain")
    assert message.subject == "IP Policy Watch · Your daily news alert: 53 new articles"
    assert "Story 52" in text and "Story 3" in text and "Story 2\n" not in text
    assert "And 3 more: http://alerts.test/digest/" in text


def test_articles_already_sent_as_alerts_are_left_out(
    app: Flask, client: Any, session: Session, sink: MailSink, monday: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    auth = {"Authorization": "Bearer dev-api-token"}
    CLOCK.freeze(MONDAY + timedelta(hours=1))
    client.post(
        "/api/v1/articles",
        json=factories.article_payload(
            topics=["wipo"], title="Urgent one", urgent=True, published_at=None
        ),
        headers=auth,
    )
    client.post(
        "/api/v1/articles",
        json=factories.article_payload(topics=["wipo"], title="Normal one", published_at=None),
        headers=auth,
    )
    assert [m.subject for m in sink.store.to(reader.email)] == ["Urgent: Urgent one"]
    tick(app, utc(2026, 11, 2, 8, 0))
    digest = sink.store.to(reader.email)[-1]
    assert digest.subject == "IP Policy Watch · Your daily news alert: 1 new article"
    assert "Normal one" in digest.body("plain") and "Urgent one" not in digest.body("plain")


def test_readers_who_left_get_no_digest(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    factories.article(session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"])
    stored = session.get(Subscriber, reader.id)
    assert stored is not None
    from alerts.models import SubscriberStatus

    stored.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    tick(app, utc(2026, 11, 2, 8, 0))
    assert sink.store.all() == []


def test_a_rerun_after_an_interruption_sends_only_what_is_missing(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    readers = [factories.subscriber(session, ["wipo"], frequency=DAILY) for _ in range(4)]
    factories.article(session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"])
    CLOCK.freeze(utc(2026, 11, 2, 8, 0))
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    with app.app_context():
        tasks.send_digest_batch(run.id, [readers[0].id, readers[1].id])  # then the worker died
        tasks.resume_digest_run(run.id)  # an admin starts the same run again
        tasks.resume_digest_run(run.id)
    assert sorted(m.recipients[0] for m in sink.store.all()) == sorted(r.email for r in readers)
    progress = digests.progress(session, run)
    assert progress.counts == {"sent": 4} and progress.done


def test_the_and_more_link_lists_the_whole_digest(
    app: Flask, client: Any, session: Session, sink: MailSink, monday: Any
) -> None:
    import re

    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    for number in range(52):
        factories.article(
            session,
            published_at=MONDAY + timedelta(minutes=number + 1),
            topics=["wipo"],
            title=f"Story {number}",
        )
    tick(app, utc(2026, 11, 2, 8, 0))
    [message] = sink.store.to(reader.email)
    link = re.search(r"http://alerts.test(/digest/\S+)", message.body("plain"))
    assert link is not None
    page = client.get(link.group(1)).get_data(as_text=True)
    assert "52 articles" in page and "Story 0<" in page and "Story 51<" in page
    assert client.get("/digest/forged").status_code == 404


def test_an_article_that_arrives_late_still_reaches_the_next_digest(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    tick(app, utc(2026, 11, 2, 8, 0))  # nothing yet
    CLOCK.freeze(utc(2026, 11, 2, 20, 0))
    # Read from a feed in the evening, dated in the morning, before the last digest.
    factories.article(session, published_at=utc(2026, 11, 2, 6, 0), topics=["wipo"], title="Late")
    tick(app, utc(2026, 11, 3, 8, 0))
    [message] = sink.store.to(reader.email)
    assert "Late" in message.body("plain")


def test_a_new_digest_frequency_starts_with_what_is_new(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    from alerts import digests

    CLOCK.freeze(MONDAY - timedelta(days=30))  # published, and read, a month ago
    factories.article(session, published_at=clock.now(), topics=["wipo"], title="Archive")
    CLOCK.freeze(MONDAY)
    reader = factories.subscriber(
        session,
        ["patents"],
        frequency=Frequency.IMMEDIATE,
        confirmed_at=MONDAY - timedelta(days=300),
    )
    from alerts.models import Subscription, Topic

    wipo = session.query(Topic).filter_by(slug="wipo").one()
    session.add(Subscription(subscriber_id=reader.id, topic_id=wipo.id, frequency=DAILY))
    session.flush()
    digests.sync_schedules(session, reader)
    session.commit()
    tick(app, utc(2026, 11, 3, 8, 0))
    assert sink.store.to(reader.email) == []  # not the archive


def test_an_early_admin_send_does_not_stick_the_reader_to_that_hour(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    la = factories.subscriber(session, ["wipo"], frequency=DAILY, timezone="America/Los_Angeles")
    sent_at: list[tuple[int, int]] = []

    def count() -> int:
        return len(sink.store.to(la.email))

    for day in range(4):
        base = MONDAY + timedelta(days=day)
        for hour in range(24):
            CLOCK.freeze(base + timedelta(hours=hour))
            if hour == 1:
                factories.article(
                    session, published_at=clock.now(), topics=["wipo"], title=f"Day {day}"
                )
            before = count()
            if day == 0 and hour == 10:  # an admin sends today's digests early
                run, _ = digests.start_run(session, DAILY, "", "admin")
                digests.enqueue(session, run, due_only=False)
                session.commit()
                with app.app_context():
                    tasks.resume_digest_run(run.id)
            tick(app, base + timedelta(hours=hour, minutes=1))
            if count() > before:
                sent_at.append((day, hour))
    # 08:00 in Los Angeles is 16:00 UTC: after the early send, each day's digest at 16:00.
    assert sent_at == [(0, 10), (1, 16), (2, 16), (3, 16)]


def test_daylight_saving_does_not_stick_a_reader_either(
    app: Flask, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    # Los Angeles moves to daylight saving time on 8 March 2026; send hour 16:00 local.
    start = utc(2026, 3, 5, 0, 30)
    frozen_clock(start)
    la = factories.subscriber(session, ["wipo"], frequency=DAILY, timezone="America/Los_Angeles")
    reader = session.get(Subscriber, la.id)
    assert reader is not None
    reader.send_hour = 16
    digests.sync_schedules(session, reader)
    session.commit()
    local_hours = []
    for hour in range(1, 24 * 7):
        at = start + timedelta(hours=hour)
        CLOCK.freeze(at - timedelta(minutes=30))
        factories.article(session, published_at=clock.now(), topics=["wipo"], title=f"Hour {hour}")
        before = len(sink.store.to(la.email))
        tick(app, at)
        if len(sink.store.to(la.email)) > before:
            local_hours.append(at.astimezone(digests.zone("America/Los_Angeles")).hour)
    assert len(local_hours) == 7 and set(local_hours) == {16}


def test_a_send_by_hand_does_not_move_the_readers_regular_digest(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    """A reader who signed up on Monday at 09:00 is due on Tuesday at 08:00. An admin's
    "send now" at 16:14 sends them a digest; an article at 16:15 comes on Tuesday at 08:00,
    not on Wednesday; nothing is sent twice or left out."""
    CLOCK.freeze(utc(2026, 11, 2, 9, 0))
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    CLOCK.freeze(utc(2026, 11, 2, 10, 0))
    factories.article(session, published_at=clock.now(), topics=["wipo"], title="Morning news")
    CLOCK.freeze(utc(2026, 11, 2, 16, 14))
    run, _ = digests.trigger(session, DAILY, "", "admin")
    session.commit()
    with app.app_context():
        tasks.resume_digest_run(run.id)
    [by_hand] = sink.store.to(reader.email)
    assert "Morning news" in by_hand.body("plain")
    CLOCK.freeze(utc(2026, 11, 2, 16, 15))
    factories.article(
        session, published_at=clock.now(), topics=["wipo"], title="Published a minute after"
    )
    tick(app, utc(2026, 11, 2, 23, 0))  # nothing is due again on Monday
    assert len(sink.store.to(reader.email)) == 1
    tick(app, utc(2026, 11, 3, 8, 0))  # Tuesday 08:00: the regular digest, on time
    messages = sink.store.to(reader.email)
    assert len(messages) == 2
    assert "Published a minute after" in messages[1].body("plain")
    assert "Morning news" not in messages[1].body("plain")
    tick(app, utc(2026, 11, 4, 8, 0))  # Wednesday: nothing new, nothing sent
    assert len(sink.store.to(reader.email)) == 2


def test_the_digest_reads_well_in_an_inbox(
    app: Flask, client: Any, session: Session, sink: MailSink, monday: Any
) -> None:
    """Its date, an intro, a link to read it in a browser, summaries in the text part too,
    and a footer that says why it comes and from whom."""
    import re

    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    factories.article(
        session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"], title="Treaty"
    )
    tick(app, utc(2026, 11, 2, 8, 0))
    [message] = sink.store.to(reader.email)
    text = message.body("plain")
    assert "2 November 2026" in text and "newest first" in text
    assert "The much belaboured takeover" in text  # the summary, in the text part
    assert "because you follow topics or keywords on IP Policy Watch" in text
    page = re.search(r"View in your browser: http://alerts.test(/digest/\S+)", text)
    assert page and "Treaty" in client.get(page.group(1)).get_data(as_text=True)
    assert 'class="why" style="' in message.body("html")  # styled smaller than the summary


def test_a_reader_changing_their_hour_while_their_batch_runs_gets_the_new_hour(
    session: Session, frozen_clock: Any
) -> None:
    """The batch loaded the reader with 08:00; at 08:00 they chose 18:00, before their digest
    was recorded: their next digest comes at 18:00 today, not tomorrow at 08:00."""

    frozen_clock(utc(2026, 11, 2, 8, 0))
    reader = factories.subscriber(session, ["wipo"], frequency=DAILY)
    reader.send_hour = 8
    digests.sync_schedules(session, reader)
    session.commit()
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    claim = digest_claims.claim_next(session, run.id, RetryPolicy())
    assert claim.subscriber_ids == [reader.id]
    # The preference centre, meanwhile, in another transaction.
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == reader.id)
        .values(send_hour=18)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    assert reader.send_hour == 8  # what the batch holds
    digest_ledger.finish(
        session,
        run.id,
        reader,
        claim.token,
        RecipientStatus.SENT,
        frequency=DAILY,
        slot=claim.slots[reader.id],
    )
    session.commit()
    schedule = session.scalar(
        select(DigestSchedule).where(DigestSchedule.subscriber_id == reader.id)
    )
    assert schedule is not None
    session.refresh(schedule)
    assert schedule.next_at == utc(2026, 11, 2, 18, 0)


def test_a_digest_sent_by_a_task_that_lost_its_reader_is_not_sent_again(
    session: Session, frozen_clock: Any
) -> None:
    """A task whose lease on the reader ran out, and was taken over, while its digest went
    out: the articles it still holds are recorded as sent (the task holding the reader now
    finds them sent, and sends no second digest), but the reader's schedule is left to
    that task."""

    reader, article, run = one_reader_run(session, frozen_clock)
    schedule = session.scalar(
        select(DigestSchedule).where(DigestSchedule.subscriber_id == reader.id)
    )
    assert schedule is not None
    before = (schedule.next_at, schedule.last_sent_at)
    stale = digest_claims.claim_next(session, run.id, RetryPolicy())
    held = digest_claims.claim_articles(session, run.id, {reader.id: [article.id]}, stale.token)
    assert held == {reader.id: [article.id]}
    session.execute(
        update(DigestRecipient)
        .where(DigestRecipient.run_id == run.id)
        .values(claim_token="taken-over")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    frozen_clock(utc(2026, 11, 2, 9, 30))  # the late task records an hour and a half on
    digest_ledger.finish(
        session,
        run.id,
        reader,
        stale.token,
        RecipientStatus.SENT,
        frequency=DAILY,
        slot=stale.slots[reader.id],
        delivery_status=DeliveryStatus.SENT,
    )
    session.commit()
    session.refresh(schedule)
    assert (schedule.next_at, schedule.last_sent_at) == before
    recipient = session.scalar(select(DigestRecipient).where(DigestRecipient.run_id == run.id))
    assert recipient is not None
    assert (recipient.status, recipient.claim_token) == (RecipientStatus.QUEUED, "taken-over")
    delivery = session.scalar(select(Delivery).where(Delivery.subscriber_id == reader.id))
    assert delivery is not None
    assert (delivery.article_id, delivery.status, delivery.claim_token) == (
        article.id,
        DeliveryStatus.SENT,
        None,
    )


def test_digests_prepared_ahead_each_carry_their_own_readers_links(
    app: Flask, session: Session, sink: MailSink, monday: Any
) -> None:
    """A batch renders the next reader's digest while the relay reads the one before: each
    reader's digest still carries their own links, in their own language."""
    readers = [
        factories.subscriber(session, ["wipo"], frequency=DAILY, locale=locale)
        for locale in ("en", "fr", "zh", "ar", "es")
    ]
    factories.article(
        session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"], title="Treaty"
    )
    tick(app, utc(2026, 11, 2, 8, 0))
    for reader in readers:
        [message] = sink.store.to(reader.email)
        parsed = message.parsed()
        link = str(parsed["List-Unsubscribe"]).strip("<>").rsplit("/", 1)[1]
        payload = tokens.read("test-secret", tokens.Purpose.UNSUBSCRIBE, link, 60)
        assert payload["s"] == reader.id
        assert f'<html lang="{reader.locale}"' in message.body("html")


def test_readers_of_one_shape_share_a_digest_except_what_one_was_sent(
    session: Session, frozen_clock: Any
) -> None:
    """Digests of readers with the same interests and window are built once and copied: a
    reader who got one of the articles already gets a digest of their own without it."""
    joined = datetime(2026, 11, 1, 9, tzinfo=UTC)
    CLOCK.freeze(joined)
    alerted, first, second = (
        factories.subscriber(session, ["wipo"], frequency=DAILY, confirmed_at=joined)
        for _ in range(3)
    )
    session.commit()
    CLOCK.freeze(datetime(2026, 11, 2, 7, tzinfo=UTC))
    older = factories.article(session, topics=["wipo"], title="Older")
    newer = factories.article(session, topics=["wipo"], title="Newer")
    session.add(
        Delivery(
            subscriber_id=alerted.id,
            article_id=older.id,
            status=DeliveryStatus.SENT,
            sent_at=datetime(2026, 11, 2, 7, tzinfo=UTC),
        )
    )
    session.commit()
    contents = digests.build_contents(session, DAILY, [alerted.id, first.id, second.id])

    def titles(reader: Any) -> list[str]:
        return [item.article.title for _, items in contents[reader.id].groups for item in items]

    assert titles(first) == titles(second) == ["Newer", "Older"]
    assert contents[first.id].article_ids == contents[second.id].article_ids
    assert contents[first.id].article_ids is not contents[second.id].article_ids  # copies
    assert contents[second.id].subscriber is second
    assert titles(alerted) == ["Newer"] and contents[alerted.id].article_ids == [newer.id]


def test_a_runs_last_batches_are_shares_of_what_is_left(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are large while many readers wait, then shrink to a share of those left that
    no task holds, so the run's send tasks finish together instead of three waiting on one."""
    monkeypatch.setattr(digest_claims, "LAST_BATCHES", 2)
    policy = RetryPolicy(digest_batch_size=10, parallelism=2)  # shares of a quarter
    readers = [factories.subscriber(session, ["wipo"], frequency=DAILY) for _ in range(60)]
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    assert digest_claims.batch_size(session, run.id, policy) == 10  # 60 left: the largest
    first = digest_claims.claim_next(session, run.id, policy)
    assert len(first.subscriber_ids) == 10
    second = digest_claims.claim_next(session, run.id, policy)
    assert len(second.subscriber_ids) == 10
    # 40 left, none held: a quarter of them.
    assert digest_claims.batch_size(session, run.id, policy) == 10

    def sent_elsewhere(some: list[Subscriber]) -> None:
        session.execute(
            update(DigestRecipient)
            .where(DigestRecipient.subscriber_id.in_([r.id for r in some]))
            .values(status=RecipientStatus.SENT)
            .execution_options(synchronize_session=False)
        )
        session.commit()

    sent_elsewhere(readers[20:44])
    assert digest_claims.batch_size(session, run.id, policy) == 4  # 16 left
    assert len(digest_claims.claim_next(session, run.id, policy).subscriber_ids) == 4
    assert digest_claims.batch_size(session, run.id, policy) == 3  # 12 left
    sent_elsewhere(readers[48:58])
    assert digest_claims.batch_size(session, run.id, policy) == 2  # 2 left: the smallest


def test_a_retried_digest_drops_the_articles_its_reader_no_longer_follows(
    session: Session, frozen_clock: Any
) -> None:
    """A reader's digest was tried once (its articles claimed), and handed back; then the
    reader stopped following one topic. The retry carries, and records, only what they still
    follow; the other article is neither left pending for a run that ends (which would keep
    it out of every later digest) nor recorded as sent: it is held for their next digest,
    which closes it, as they follow it no more."""
    frozen_clock(utc(2026, 11, 2, 8, 0))
    reader = factories.subscriber(session, ["wipo", "wto-trips"], frequency=DAILY)
    kept = factories.article(session, published_at=utc(2026, 11, 2, 7, 0), topics=["wipo"])
    dropped = factories.article(session, published_at=utc(2026, 11, 2, 7, 0), topics=["wto-trips"])
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    policy = RetryPolicy()

    def rows() -> dict[int, tuple[DeliveryStatus, str | None]]:
        return {
            row.article_id: (row.status, row.claim_token)
            for row in session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id))
        }

    first = digest_claims.claim_next(session, run.id, policy)
    wanted = {reader.id: [kept.id, dropped.id]}
    assert digest_claims.claim_articles(session, run.id, wanted, first.token) == wanted
    digest_ledger.release(session, run.id, [reader.id], first.token, "relay down")
    session.commit()
    assert set(rows()) == {kept.id, dropped.id}

    # Only the first article matches now (as the retry's build finds).
    session.execute(
        delete(Subscription).where(
            Subscription.subscriber_id == reader.id,
            Subscription.topic_id
            == select(Topic.id).where(Topic.slug == "wto-trips").scalar_subquery(),
        )
    )
    second = digest_claims.claim_next(session, run.id, policy)
    assert second.subscriber_ids == [reader.id]
    held = digest_claims.claim_articles(session, run.id, {reader.id: [kept.id]}, second.token)
    assert held == {reader.id: [kept.id]}
    assert rows() == {
        kept.id: (DeliveryStatus.PENDING, second.token),
        dropped.id: (DeliveryStatus.HELD, None),
    }
    digest_ledger.finish(
        session,
        run.id,
        reader,
        second.token,
        RecipientStatus.SENT,
        frequency=DAILY,
        slot=second.slots[reader.id],
        article_count=1,
        delivery_status=DeliveryStatus.SENT,
    )
    session.commit()
    assert rows() == {
        kept.id: (DeliveryStatus.SENT, None),
        dropped.id: (DeliveryStatus.HELD, None),
    }
    frozen_clock(utc(2026, 11, 3, 8, 0))
    assert digests.build_contents(session, DAILY, [reader.id])[reader.id].empty
    later, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, later, due_only=False)
    session.commit()
    third = digest_claims.claim_next(session, later.id, policy)
    digest_claims.claim_articles(
        session, later.id, {reader.id: []}, third.token, carries_held_from=utc(2026, 11, 3, 8, 0)
    )
    assert rows()[dropped.id] == (DeliveryStatus.SKIPPED, None)


def test_a_retried_digest_that_comes_out_empty_leaves_no_claim_behind(
    session: Session, frozen_clock: Any
) -> None:
    """The same, when the retry carries nothing: no row is left pending for the ended run,
    and the article is held for the reader's next digest (which carries it if they follow it
    again)."""
    reader, article, run = one_reader_run(session, frozen_clock)
    policy = RetryPolicy()
    first = digest_claims.claim_next(session, run.id, policy)
    digest_claims.claim_articles(session, run.id, {reader.id: [article.id]}, first.token)
    digest_ledger.release(session, run.id, [reader.id], first.token, "relay down")
    session.commit()
    second = digest_claims.claim_next(session, run.id, policy)
    assert not digest_claims.claim_articles(session, run.id, {reader.id: []}, second.token).get(
        reader.id
    )
    [row] = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id))
    assert (row.status, row.held, row.digest_run_id, row.claim_token) == (
        DeliveryStatus.HELD,
        "carry",
        None,
        None,
    )


def claimed_then_handed_back(
    session: Session, frozen_clock: Any, title: str
) -> tuple[Subscriber, Any, DigestRun]:
    """At 08:00, a daily run to a reader of WIPO claimed an article of 07:00 for them, then
    handed them back (the relay was down): their digest waits for the run's retry."""
    frozen_clock(utc(2026, 11, 2, 8, 0))
    reader = factories.subscriber(
        session, ["wipo"], frequency=DAILY, confirmed_at=utc(2026, 11, 1, 9, 0)
    )
    article = factories.article(
        session, published_at=utc(2026, 11, 2, 7, 0), topics=["wipo"], title=title
    )
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    first = digest_claims.claim_next(session, run.id, RetryPolicy())
    digest_claims.claim_articles(session, run.id, {reader.id: [article.id]}, first.token)
    digest_ledger.release(session, run.id, [reader.id], first.token, "relay down")
    session.commit()
    return reader, article, run


def test_a_retried_digest_carries_what_its_run_claimed_after_another_digest_moved_the_window(
    app: Flask, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    """A reader's digest was tried once (its article claimed) and handed back; before the
    retry, another digest of theirs went out and moved their window past that article. The
    retry still carries it: nothing else ever would (every later digest starts after it)."""
    reader, _, run = claimed_then_handed_back(session, frozen_clock, "Claimed once")
    frozen_clock(utc(2026, 11, 2, 9, 0))
    session.execute(
        update(DigestSchedule)
        .where(DigestSchedule.subscriber_id == reader.id)
        .values(last_sent_at=utc(2026, 11, 2, 8, 30))
    )
    session.commit()
    assert digests.build_contents(session, DAILY, [reader.id])[reader.id].empty  # a new digest

    with app.app_context():
        tasks.resume_digest_run(run.id)
    [message] = sink.store.to(reader.email)
    assert "Claimed once" in message.body("plain")
    [row] = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id))
    session.refresh(row)
    assert (row.status, row.claim_token) == (DeliveryStatus.SENT, None)


@pytest.mark.parametrize("away", ["paused", "weekly now"])
def test_a_reader_who_went_away_mid_run_is_still_owed_what_the_run_claimed(
    app: Flask, session: Session, sink: MailSink, frozen_clock: Any, away: str
) -> None:
    """The run claimed a reader's article and an alert held past their cap, then handed the
    reader back; meanwhile they paused their alerts, or moved their topic to a weekly digest.
    Paused: the run sends nothing and gives both back, for their first digest after the
    pause. Weekly: the run still sends the held alert (a held alert goes in the next digest,
    whatever its frequency) and holds the article for the next digest, the weekly one."""
    frozen_clock(utc(2026, 11, 2, 8, 0))
    reader = factories.subscriber(
        session, ["wipo"], frequency=DAILY, confirmed_at=utc(2026, 11, 1, 9, 0)
    )
    article = factories.article(
        session, published_at=utc(2026, 11, 2, 7, 0), topics=["wipo"], title="Owed"
    )
    capped = factories.article(
        session, published_at=utc(2026, 11, 2, 7, 30), topics=["wipo"], title="Held back"
    )
    session.add(
        Delivery(
            subscriber_id=reader.id,
            article_id=capped.id,
            status=DeliveryStatus.HELD,
            held="cap",
            updated_at=utc(2026, 11, 2, 7, 30),
        )
    )
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    first = digest_claims.claim_next(session, run.id, RetryPolicy())
    digest_claims.claim_articles(
        session,
        run.id,
        {reader.id: [article.id, capped.id]},
        first.token,
        carries_held_from=utc(2026, 11, 2, 8, 0),
    )
    digest_ledger.release(session, run.id, [reader.id], first.token, "relay down")
    stored = session.get(Subscriber, reader.id)
    assert stored is not None
    if away == "paused":
        stored.paused_until = utc(2026, 11, 3, 12, 0)
    else:
        session.execute(
            update(Subscription)
            .where(Subscription.subscriber_id == reader.id)
            .values(frequency=WEEKLY)
        )
    session.flush()
    digests.sync_schedules(session, stored)
    session.commit()
    with app.app_context():
        tasks.resume_digest_run(run.id)
    rows = {
        row.article_id: (row.status, row.digest_run_id)
        for row in session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id))
    }
    if away == "paused":
        assert sink.store.to(reader.email) == []
        assert rows == {
            capped.id: (DeliveryStatus.HELD, None),
            article.id: (DeliveryStatus.HELD, None),
        }
        owed, frequency = [article.id, capped.id], DAILY
    else:
        [message] = sink.store.to(reader.email)
        assert "Held back" in message.body("plain") and "Owed" not in message.body("plain")
        assert rows == {
            capped.id: (DeliveryStatus.SENT, run.id),
            article.id: (DeliveryStatus.HELD, None),
        }
        owed, frequency = [article.id], WEEKLY
    frozen_clock(utc(2026, 11, 9, 9, 0))
    later = digests.build_contents(session, frequency, [reader.id])[reader.id]
    assert sorted(later.article_ids) == sorted(owed)


@pytest.mark.parametrize(
    ("moved_to", "paused"), [(WEEKLY, False), (Frequency.IMMEDIATE, False), (WEEKLY, True)]
)
def test_an_article_a_daily_run_held_when_its_reader_moved_the_topic_is_not_lost(
    app: Flask,
    session: Session,
    sink: MailSink,
    frozen_clock: Any,
    moved_to: Frequency,
    paused: bool,
) -> None:
    """A daily run claimed a reader's article and handed them back (the relay was down); the
    reader then moved the topic to a weekly digest, which went out before the daily run was
    retried: it could not take the article the daily run held, and its window moved past it.
    Or they moved it to instant alerts, and have no digest left. The retry sends nothing
    (they follow nothing daily now) and holds the article for their next digest (a daily one
    kept for it, if they have none), which carries it: sent once, not lost. The same if they
    also paused their emails until the next day: the retry finds them away."""
    reader, article, daily = claimed_then_handed_back(session, frozen_clock, "Owed once")

    frozen_clock(utc(2026, 11, 2, 10, 0))
    session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id == reader.id)
        .values(frequency=moved_to)
    )
    stored = session.get(Subscriber, reader.id)
    assert stored is not None
    if paused:
        stored.paused_until = utc(2026, 11, 3, 12, 0)
    digests.sync_schedules(session, stored)
    session.commit()

    def run_now(frequency: Frequency, at: datetime) -> DigestRun:
        frozen_clock(at)
        run, _ = digests.start_run(session, frequency, "", "admin")
        digests.enqueue(session, run, due_only=False)
        session.commit()
        with app.app_context():
            tasks.resume_digest_run(run.id)
        return run

    if moved_to == WEEKLY:
        run_now(WEEKLY, utc(2026, 11, 2, 11, 0))
    frozen_clock(utc(2026, 11, 2, 12, 0))
    with app.app_context():
        tasks.resume_digest_run(daily.id)
    assert sink.store.to(reader.email) == []
    session.expire_all()
    assert explain.explain(session, stored, article, now()).why == (
        "held for their next digest: they changed how they follow it meanwhile"
    )

    next_week = (
        run_now(WEEKLY, utc(2026, 11, 9, 11, 0))
        if moved_to == WEEKLY
        else run_now(DAILY, utc(2026, 11, 3, 9, 0))
    )
    [message] = sink.store.to(reader.email)
    assert "Owed once" in message.body("plain")
    [row] = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id))
    assert (row.status, row.digest_run_id) == (DeliveryStatus.SENT, next_week.id)


def test_a_reader_found_away_keeps_the_claims_another_task_still_sends(
    session: Session, frozen_clock: Any
) -> None:
    """A task whose lease went stale may still be sending a reader's digest when a second
    task takes the reader over and finds them paused: the second gives back nothing of the
    first's, whose email is recorded as sent when it goes (not sent again after the pause)."""
    reader, article, run = one_reader_run(session, frozen_clock)
    first = digest_claims.claim_next(session, run.id, RetryPolicy())
    digest_claims.claim_articles(session, run.id, {reader.id: [article.id]}, first.token)
    digest_ledger.skip_inactive(session, run.id, reader.id, "a second task's token")
    session.commit()
    [row] = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id))
    assert (row.status, row.claim_token) == (DeliveryStatus.PENDING, first.token)


def test_a_sent_digests_outcome_is_one_transaction_and_moves_the_schedule_on(
    session: Session,
) -> None:
    """The reader's digest, its articles and their schedule are recorded together. On
    PostgreSQL that is one statement, its own transaction when nothing else is recorded with
    it (committed as it runs); otherwise it commits or rolls back with the caller's. Seen
    from another connection; recorded on one held for the task, as a send task does."""
    reader = factories.subscriber(session, frequency=Frequency.DAILY)
    article = factories.article(session)
    run, _ = digests.start_run(session, Frequency.DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    claim = digest_claims.claim_next(session, run.id, RetryPolicy())
    digest_claims.claim_articles(session, run.id, {reader.id: [article.id]}, claim.token)
    session.commit()
    covered_before = session.scalar(select(DigestSchedule.last_sent_at))
    session.commit()

    def outcome() -> tuple[RecipientStatus, DeliveryStatus, bool]:
        recipient = session.scalars(select(DigestRecipient.status)).one()
        row = session.scalars(select(Delivery.status)).one()
        moved = session.scalar(select(DigestSchedule.last_sent_at)) != covered_before
        session.commit()
        return recipient, row, moved

    def record(task: Session, alone: bool) -> None:
        digest_ledger.finish(
            task,
            run.id,
            reader,
            claim.token,
            RecipientStatus.SENT,
            frequency=Frequency.DAILY,
            article_count=1,
            delivery_status=DeliveryStatus.SENT,
            alone=alone,
        )

    postgresql = session.get_bind().dialect.name == "postgresql"
    with session.get_bind().connect() as connection:
        task = Session(bind=connection, expire_on_commit=False)
        task.commit()  # nothing open, as after each outcome the send loop commits
        for alone in (False, True):
            record(task, alone)
            if alone and postgresql:
                assert outcome() == (RecipientStatus.SENT, DeliveryStatus.SENT, True)
            else:
                assert outcome() == (RecipientStatus.QUEUED, DeliveryStatus.PENDING, False)
                task.rollback()
                assert outcome() == (RecipientStatus.QUEUED, DeliveryStatus.PENDING, False)
        # Recorded with the caller's commit (on PostgreSQL already: this matches nothing).
        record(task, False)
        task.commit()
        task.close()
    assert outcome() == (RecipientStatus.SENT, DeliveryStatus.SENT, True)
