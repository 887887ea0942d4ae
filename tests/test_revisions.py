"""An article that changes after readers got it: "Updated since we sent it" in their next
digest, and one short "Correction" email to instant readers when the publisher marks it so;
never twice for the same change. Through the API with tasks run eagerly into a real SMTP
sink on a socket, the clock moved by the clock fixture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_operations import scrape, value
from test_reader import token

from alerts import tokens
from alerts.clock import now
from alerts.mail.sink import FailureRule, MailSink
from alerts.models import (
    ArticleRevision,
    DeliveryStatus,
    Frequency,
    NoticeKind,
    RevisionNotice,
    Subscriber,
    SubscriberStatus,
)
from worker import tasks

import factories
from support import CLOCK, csrf_from

AUTH = {"Authorization": "Bearer dev-api-token"}
MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FIRST_TITLE = "WIPO members agree a treaty on designs"
SUMMARY = "<p>Delegates in Geneva adopted the Design Law Treaty after two decades.</p>"


def publish(client: FlaskClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/articles", json=payload, headers=AUTH)
    assert response.status_code in (200, 201), response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def story(**changes: Any) -> dict[str, Any]:
    payload = factories.article_payload(
        guid="https://news.example.org/?p=designs",
        url="https://news.example.org/2026/11/30/design-law-treaty/",
        title=FIRST_TITLE,
        summary=SUMMARY,
        topics=["wipo"],
        published_at=None,
    )
    payload.update(changes)
    return payload


def readers(session: Session) -> tuple[Subscriber, Subscriber, Subscriber]:
    """An instant reader, a daily reader of the same topic, and a reader of another."""
    instant = factories.subscriber(session, ["wipo"], email="instant@example.org")
    daily = factories.subscriber(
        session, {"wipo": Frequency.DAILY}, email="daily@example.org", timezone="Europe/Paris"
    )
    other = factories.subscriber(session, ["itu-icann"], email="other@example.org")
    session.commit()
    return instant, daily, other


def digests_at(app: Flask, moment: datetime) -> None:
    CLOCK.freeze(moment)
    with app.app_context():
        tasks.run_due_digests()


def test_a_correction_emails_each_instant_reader_once(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    instant, daily, other = readers(session)
    publish(client, story())
    assert [m.subject for m in sink.store.to(instant.email)] == [FIRST_TITLE]

    CLOCK.freeze(MONDAY + timedelta(hours=2))
    body = publish(
        client,
        story(
            title="WIPO members agree a treaty on industrial designs",
            correction="An earlier version said the treaty covers patents.",
        ),
    )
    assert body["changed"] == ["title"]
    assert body["revision"]["correction"] is True

    correction = sink.store.to(instant.email)[-1]
    assert correction.subject == "Correction: WIPO members agree a treaty on industrial designs"
    text = correction.body("plain")
    assert f"The headline we sent you: “{FIRST_TITLE}”" in text
    assert "What the editors say: An earlier version said the treaty covers patents." in text
    assert "30 November 2026" in text  # the day it was corrected
    assert correction.parsed()["List-Unsubscribe"].startswith("<http://alerts.test/unsubscribe/")
    html = correction.body("html")
    assert '\u201c<span dir="auto">WIPO members agree a treaty on designs</span>\u201d' in html
    # Readers who did not get it as an alert get no email: the digest reader sees it later.
    assert sink.store.to(daily.email) == [] and sink.store.to(other.email) == []

    # The publisher sends the same update again (a retry, a re-import): nothing new.
    again = publish(client, story(title="WIPO members agree a treaty on industrial designs",
                                  correction=True))  # fmt: skip
    assert again["revision"] is None and again["changed"] == []
    assert "neither the title nor the summary changed" in again["warnings"]["correction"]
    with app.app_context():
        tasks.send_corrections()
    assert len(sink.store.to(instant.email)) == 2

    # A later change that is not a correction: instant readers get nothing new.
    publish(client, story(title="WIPO members agree a treaty on industrial designs (analysis)"))
    with app.app_context():
        tasks.send_corrections()
    assert len(sink.store.to(instant.email)) == 2
    notices = session.scalars(select(RevisionNotice)).all()
    assert [(n.subscriber_id, n.kind, n.status) for n in notices] == [
        (instant.id, NoticeKind.CORRECTION, DeliveryStatus.SENT)
    ]


def test_the_next_digest_shows_what_changed_once(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    instant, daily, _other = readers(session)
    publish(client, story())
    digests_at(app, datetime(2026, 12, 1, 7, 0, tzinfo=UTC))  # 08:00 in Paris
    [first] = sink.store.to(daily.email)
    assert FIRST_TITLE in first.body("plain")

    CLOCK.freeze(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    publish(
        client,
        story(
            title="WIPO members adopt the Design Law Treaty",
            summary="<p>Delegates in Riyadh adopted the Design Law Treaty.</p>",
        ),
    )
    # Not a correction: no email now, to anyone.
    assert len(sink.store.to(daily.email)) == 1 and len(sink.store.to(instant.email)) == 1

    digests_at(app, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    update = sink.store.to(daily.email)[-1]
    assert update.subject.endswith(" · Your news alert: 1 article updated since we sent it")
    text = update.body("plain")
    assert "== Updated since we sent it ==" in text
    assert "WIPO members adopt the Design Law Treaty" in text
    assert f"The headline we sent you: “{FIRST_TITLE}”." in text
    assert "The summary was revised." in text
    assert "Delegates in Riyadh" in text
    assert "The articles published since your last digest" not in text  # only the update
    assert "[Correction]" not in text

    # Its "view in your browser" page lists the update too.
    link = next(line for line in text.splitlines() if "/digest/" in line).split(": ", 1)[1]
    page = client.get(link.removeprefix("http://alerts.test")).get_data(as_text=True)
    assert "Updated since we sent it" in page and "WIPO members adopt the Design Law" in page
    assert "No articles." not in page

    # Told once: the digest after that has nothing, so no email.
    digests_at(app, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    assert len(sink.store.to(daily.email)) == 2
    # The instant reader got an alert, not a digest: nothing for an update.
    assert len(sink.store.to(instant.email)) == 1


def test_updates_and_new_articles_share_a_digest_and_a_correction_is_labelled(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    instant, daily, _other = readers(session)
    publish(client, story())
    digests_at(app, datetime(2026, 12, 1, 7, 0, tzinfo=UTC))

    CLOCK.freeze(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    publish(client, story(title="WIPO members agree a treaty on designs, 35 sign", correction=True))
    CLOCK.freeze(datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    publish(client, story(title="WIPO members agree a treaty on designs, 36 sign",
                          correction="The count of signatories was wrong."))  # fmt: skip
    publish(client, factories.article_payload(title="Broadcasting treaty talks stall",
                                              topics=["wipo"], published_at=None))  # fmt: skip
    # Got it in a digest, not as an alert: no correction email.
    assert len(sink.store.to(daily.email)) == 1

    digests_at(app, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    digest = sink.store.to(daily.email)[-1]
    assert "1 new article" in digest.subject
    text = digest.body("plain")
    assert text.index("Broadcasting treaty talks stall") < text.index("Updated since we sent it")
    # Two changes, one entry: from what the reader was sent to what it is now.
    assert text.count("WIPO members agree a treaty on designs, 36 sign") == 1
    assert "35 sign" not in text
    assert (
        f"[Correction] Updated on 1 December 2026. The headline we sent you: “{FIRST_TITLE}”."
        in text
    )
    assert "What the editors say: The count of signatories was wrong." in text
    assert ">Correction</span> Updated on 1 December 2026." in digest.body("html")
    notices = session.scalars(select(RevisionNotice).order_by(RevisionNotice.id)).all()
    told = [(n.subscriber_id, n.kind, n.status) for n in notices]
    assert sorted(told) == sorted(
        [(daily.id, NoticeKind.DIGEST, DeliveryStatus.SENT)] * 2
        # Each correction is a change of its own: the alert's reader had one email each.
        + [(instant.id, NoticeKind.CORRECTION, DeliveryStatus.SENT)] * 2
    )
    assert [m.subject for m in sink.store.to(instant.email)][1:] == [
        "Correction: WIPO members agree a treaty on designs, 35 sign",
        "Correction: WIPO members agree a treaty on designs, 36 sign",
        "Broadcasting treaty talks stall",
    ]


def test_readers_who_never_got_the_article_hear_nothing_of_its_changes(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    publish(client, story())
    # Joins after it went out: their first digest has the article as it is now, no update.
    latecomer = factories.subscriber(
        session, {"wipo": Frequency.DAILY}, email="late@example.org", confirmed_at=MONDAY
    )
    session.commit()
    CLOCK.freeze(MONDAY + timedelta(hours=1))
    publish(client, story(title="WIPO members adopt the Design Law Treaty", correction=True))
    digests_at(app, datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    [digest] = sink.store.to(latecomer.email)
    assert "WIPO members adopt the Design Law Treaty" in digest.body("plain")
    assert "Updated since we sent it" not in digest.body("plain")
    assert session.scalars(select(RevisionNotice)).all() == []


def test_a_refused_correction_is_retried_and_a_departed_reader_is_skipped(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    instant, _daily, _other = readers(session)
    leaver = factories.subscriber(session, ["wipo"], email="leaver@example.org")
    session.commit()
    publish(client, story())
    leaver.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    sink.handler.rules.append(FailureRule(instant.email, 451, 1))
    publish(client, story(title="WIPO members adopt the Design Law Treaty", correction=True))
    assert len(sink.store.to(instant.email)) == 1  # refused for now
    app.config["METRICS_TOKEN"] = "m3trics"
    samples = scrape(app.test_client())
    assert value(samples, "alerts_deliveries_retrying", kind="correction") == 1
    assert value(samples, "alerts_emails_total", kind="correction", outcome="retried") >= 1

    with app.app_context():
        tasks.send_corrections()  # its backoff has not passed: not yet
    assert len(sink.store.to(instant.email)) == 1
    CLOCK.freeze(MONDAY + timedelta(minutes=5))
    with app.app_context():
        tasks.send_corrections()
        tasks.send_corrections()
    subjects = [m.subject for m in sink.store.to(instant.email)]
    assert subjects == [FIRST_TITLE, "Correction: WIPO members adopt the Design Law Treaty"]
    assert len(sink.store.to(leaver.email)) == 1  # the alert only
    session.expire_all()
    statuses = dict(
        session.execute(select(RevisionNotice.subscriber_id, RevisionNotice.status)).all()
    )
    assert statuses == {instant.id: DeliveryStatus.SENT, leaver.id: DeliveryStatus.SKIPPED}


def test_a_correction_field_must_say_yes_no_or_what(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    for bad in (5, "", "   ", ["yes"], "x" * 1001, "false", "True", "no"):
        response = client.post("/api/v1/articles", json=story(correction=bad), headers=AUTH)
        assert response.status_code == 422
        assert "correction" in response.get_json()["fields"]
    # A hostile note is one line of text, shown escaped.
    factories.subscriber(session, ["wipo"], email="instant@example.org")
    session.commit()
    publish(client, story())
    publish(client, story(title="Changed", correction="<script>x</script>\r\nBcc: a@b.c"))
    correction = sink.store.to("instant@example.org")[-1]
    assert "<script>" not in correction.body("html")
    assert correction.parsed()["Bcc"] is None
    assert "What the editors say: <script>x</script> Bcc: a@b.c" in correction.body("plain")


def test_a_reader_can_turn_correction_emails_off_in_the_preference_centre(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    reader = factories.subscriber(session, ["wipo"], email="instant@example.org")
    session.commit()
    link = f"/manage/{token(tokens.Purpose.MANAGE, reader)}"
    page = client.get(link).get_data(as_text=True)
    assert 'id="corrections"' in page and "Updated since we sent it" in page
    form = {
        "csrf_token": csrf_from(page), "action": "save", "topics": ["wipo"],
        "frequency-wipo": "immediate", "languages": ["en"], "timezone": "UTC",
        "send_hour": "8", "send_weekday": "0", "locale": "en", "instant_fields": "2",
    }  # fmt: skip
    assert client.post(link, data=form).status_code == 303  # the box left unticked
    session.refresh(reader)
    assert reader.corrections is False
    # A page from before this box (marker "1") keeps the reader's choice.
    assert client.post(link, data={**form, "instant_fields": "1"}).status_code == 303
    session.refresh(reader)
    assert reader.corrections is False

    publish(client, story())
    body = publish(client, story(title="WIPO members adopt the Design Law Treaty", correction=True))
    assert body["revision"]["correction"] is True
    with app.app_context():
        tasks.send_corrections()
    assert [m.subject for m in sink.store.to(reader.email)] == [FIRST_TITLE]
    assert session.scalars(select(RevisionNotice)).all() == []  # not even owed

    assert client.post(link, data={**form, "corrections": "yes"}).status_code == 303
    session.refresh(reader)
    assert reader.corrections is True


def test_a_digest_refused_for_now_tells_of_the_update_when_it_is_retried(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    _instant, daily, _other = readers(session)
    publish(client, story())
    digests_at(app, datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    CLOCK.freeze(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    publish(client, story(title="WIPO members adopt the Design Law Treaty"))

    sink.handler.rules.append(FailureRule(daily.email, 451, 1))
    digests_at(app, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    assert len(sink.store.to(daily.email)) == 1  # refused for now
    [notice] = session.scalars(select(RevisionNotice)).all()
    assert (notice.status, notice.claim_token) == (DeliveryStatus.PENDING, None)

    CLOCK.freeze(datetime(2026, 12, 2, 7, 10, tzinfo=UTC))  # past the retry's backoff
    with app.app_context():
        tasks.reconcile_sending()
    assert len(sink.store.to(daily.email)) == 2
    retried = sink.store.to(daily.email)[-1]
    assert "WIPO members adopt the Design Law Treaty" in retried.body("plain")
    session.expire_all()
    [notice] = session.scalars(select(RevisionNotice)).all()
    assert (notice.status, notice.attempts) == (DeliveryStatus.SENT, 1)
    with app.app_context():
        tasks.reconcile_sending()
    digests_at(app, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    assert len(sink.store.to(daily.email)) == 2  # told once


def weekly_run(client: FlaskClient) -> None:
    """A weekly run started by an editor (every weekly reader, whatever their day)."""
    response = client.post("/api/v1/digests", json={"frequency": "weekly"}, headers=AUTH)
    assert response.status_code == 202, response.get_json()


def two_digests(session: Session) -> Subscriber:
    """A Paris reader with a daily digest (WIPO) and a weekly one (ITU)."""
    reader = factories.subscriber(
        session,
        {"wipo": Frequency.DAILY, "itu-icann": Frequency.WEEKLY},
        email="both@example.org",
        timezone="Europe/Paris",
    )
    session.commit()
    return reader


def test_a_change_told_in_one_digest_is_not_told_in_the_other(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    reader = two_digests(session)
    publish(client, story())
    digests_at(app, datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    CLOCK.freeze(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    publish(client, story(title="WIPO members adopt the Design Law Treaty"))
    digests_at(app, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    assert "updated since we sent it" in sink.store.to(reader.email)[-1].subject
    # The weekly digest's window covers the change too: it is told once, not again.
    weekly_run(client)
    digests_at(app, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    assert len(sink.store.to(reader.email)) == 2
    [notice] = session.scalars(select(RevisionNotice)).all()
    assert (notice.kind, notice.status) == (NoticeKind.DIGEST, DeliveryStatus.SENT)


def test_two_digests_at_once_tell_a_change_whole_and_once(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    reader = two_digests(session)
    publish(client, story())
    digests_at(app, datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    CLOCK.freeze(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    publish(client, story(title="WIPO members adopt the Design Law Treaty"))
    # The weekly digest takes the change, and the relay refuses it for now.
    sink.handler.rules.append(FailureRule(reader.email, 451, 1))
    weekly_run(client)
    assert len(sink.store.to(reader.email)) == 1
    CLOCK.freeze(datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    publish(client, story(title="WIPO members adopt the Design Law Treaty in Riyadh"))
    # The daily digest could tell only the second half of the change: it tells none of it.
    digests_at(app, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    assert len(sink.store.to(reader.email)) == 1
    # The weekly digest, retried, tells the whole: from what they got to what it is now.
    with app.app_context():
        tasks.reconcile_sending()
    digests = sink.store.to(reader.email)
    assert len(digests) == 2
    text = digests[1].body("plain")
    assert f"The headline we sent you: \u201c{FIRST_TITLE}\u201d." in text
    assert "WIPO members adopt the Design Law Treaty in Riyadh" in text
    assert text.count("Updated on") == 1
    digests_at(app, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    assert len(sink.store.to(reader.email)) == 2
    statuses = session.scalars(select(RevisionNotice.status)).all()
    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.SENT]


def test_a_correction_quotes_the_headline_the_reader_was_sent(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    instant, _daily, _other = readers(session)
    publish(client, story())
    publish(client, story(title="WIPO members agree a design treaty"))  # not a correction
    publish(client, story(title="WIPO members agree a design law treaty", correction=True))
    correction = sink.store.to(instant.email)[-1]
    assert correction.subject == "Correction: WIPO members agree a design law treaty"
    assert f"The headline we sent you: \u201c{FIRST_TITLE}\u201d" in correction.body("plain")


def test_an_alert_sent_with_the_old_version_after_a_correction_still_gets_it(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    """A worker that read the article before the correction, and records its alert after
    the correction was published: that reader is owed the correction too."""
    from alerts.models import Article, Delivery

    frozen_clock(MONDAY)
    instant, _daily, _other = readers(session)
    late = factories.subscriber(session, ["wipo"], email="late@example.org")
    session.commit()
    publish(client, story())
    article = session.scalars(select(Article)).one()
    row = session.scalars(select(Delivery).where(Delivery.subscriber_id == late.id)).one()
    row.status, row.sent_at = DeliveryStatus.PENDING, None  # still being sent
    session.commit()
    publish(client, story(title="WIPO members adopt the Design Law Treaty", correction=True))
    assert [m.subject for m in sink.store.to(instant.email)][-1].startswith("Correction")
    revision = session.scalars(select(ArticleRevision)).one()
    assert revision.notices_done_at is None  # an alert of it is still being sent
    # ... and is recorded now, carrying the version it read (before the correction).
    CLOCK.freeze(MONDAY + timedelta(seconds=5))
    row.status, row.sent_at, row.revision_id = DeliveryStatus.SENT, now(), 0
    session.commit()
    with app.app_context():
        tasks.send_corrections()
        tasks.send_corrections()
    assert [m.subject for m in sink.store.to(late.email)] == [
        FIRST_TITLE,  # the alert, as sent before the row was set back (the worker's copy)
        "Correction: WIPO members adopt the Design Law Treaty",
    ]
    session.refresh(revision)
    assert revision.notices_done_at is not None  # nothing left to send: done
    assert len(sink.store.to(instant.email)) == 2
    assert article.id == revision.article_id


def test_every_update_is_told_and_the_email_shows_twenty(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    _instant, daily, _other = readers(session)
    guids = [f"https://news.example.org/?p=story-{number}" for number in range(23)]
    for number, guid in enumerate(guids):
        publish(client, story(guid=guid, title=f"Story {number}"))
    digests_at(app, datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    CLOCK.freeze(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    for number, guid in enumerate(guids):
        publish(client, story(guid=guid, title=f"Story {number}, revised"))
    digests_at(app, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    digest = sink.store.to(daily.email)[-1]
    text = digest.body("plain")
    assert "23 articles updated since we sent them" in digest.subject
    assert text.count("Updated on") == 20 and "And 3 more: http://alerts.test/digest/" in text
    page = client.get(text.split("And 3 more: http://alerts.test", 1)[1].split()[0])
    assert page.get_data(as_text=True).count(", revised</a>") == 23
    statuses = session.scalars(select(RevisionNotice.status)).all()
    assert statuses == [DeliveryStatus.SENT] * 23


def test_an_alert_that_went_out_after_the_change_is_not_told_of_it(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    """Sent in the new version (its row records which), so no correction and no update."""
    from alerts.models import Article, Delivery
    from alerts.sending import ledger

    frozen_clock(MONDAY)
    publish(client, story())
    article = session.scalars(select(Article)).one()
    publish(client, story(title="WIPO members adopt the Design Law Treaty", correction=True))
    # A reader owed the alert only now (say, a fan-out resumed late): it goes out corrected.
    late = factories.subscriber(
        session, {"wipo": Frequency.IMMEDIATE, "itu-icann": Frequency.DAILY}, email="l@example.org"
    )
    session.commit()
    ledger.write_pending(session, article.id, [late.id])
    session.commit()
    with app.app_context():
        tasks.send_alerts(article.id)
        tasks.send_corrections()
    row = session.scalars(select(Delivery).where(Delivery.subscriber_id == late.id)).one()
    session.refresh(row)
    session.refresh(article)
    assert article.version > 0
    assert (row.status, row.revision_id) == (DeliveryStatus.SENT, article.version)
    assert [m.subject for m in sink.store.to(late.email)] == [
        "WIPO members adopt the Design Law Treaty"
    ]
    digests_at(app, datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    assert len(sink.store.to(late.email)) == 1  # no digest: nothing new, nothing updated


def test_an_alert_held_by_the_cap_and_changed_before_the_digest_is_not_told_again(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    capped = factories.subscriber(session, ["wipo"], email="capped@example.org")
    capped.daily_cap = 1
    session.commit()
    publish(client, factories.article_payload(title="First of the day", topics=["wipo"],
                                              published_at=None))  # fmt: skip
    publish(client, story())  # past the cap: held for the digest
    publish(client, story(title="WIPO members adopt the Design Law Treaty"))
    digests_at(app, datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    digest = sink.store.to(capped.email)[-1]
    assert "WIPO members adopt the Design Law Treaty" in digest.body("plain")
    assert "Updated since we sent it" not in digest.body("plain")
    # It carried the changed version: the next digest has nothing to tell of it.
    CLOCK.freeze(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    publish(client, factories.article_payload(title="Second day", topics=["wipo"],
                                              published_at=None))  # fmt: skip
    publish(client, factories.article_payload(title="Second day, later", topics=["wipo"],
                                              published_at=None))  # fmt: skip
    digests_at(app, datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    last = sink.store.to(capped.email)[-1]
    assert "Second day, later" in last.body("plain")
    assert "Updated since we sent it" not in last.body("plain")


def test_a_correction_waits_for_the_end_of_the_readers_quiet_hours(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(datetime(2026, 11, 30, 20, 0, tzinfo=UTC))  # 21:00 in Paris
    reader = factories.subscriber(
        session, ["wipo"], email="owl@example.org", timezone="Europe/Paris"
    )
    reader.quiet_from, reader.quiet_until = 22 * 60, 7 * 60
    session.commit()
    publish(client, story())
    CLOCK.freeze(datetime(2026, 11, 30, 22, 0, tzinfo=UTC))  # 23:00: quiet
    publish(client, story(title="WIPO members adopt the Design Law Treaty", correction=True))
    assert len(sink.store.to(reader.email)) == 1
    CLOCK.freeze(datetime(2026, 12, 1, 5, 59, tzinfo=UTC))
    with app.app_context():
        tasks.send_corrections()
    assert len(sink.store.to(reader.email)) == 1
    CLOCK.freeze(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))  # 07:00
    with app.app_context():
        tasks.send_corrections()
        tasks.send_corrections()
    assert [m.subject for m in sink.store.to(reader.email)][1:] == [
        "Correction: WIPO members adopt the Design Law Treaty"
    ]
