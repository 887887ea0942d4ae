"""CSV export and import (domain, CLI and admin), suppressed addresses and their reactivation."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import subscriber_csv
from alerts.cli import main
from alerts.mail.sink import MailSink
from alerts.models import ConsentRecord, Frequency, Subscriber, SubscriberStatus, Subscription

import factories
from support import csrf_from

GOOD_AND_BAD = (
    "email,topics,languages,timezone,send_hour\r\n"
    "ana@example.org,wipo:daily;copyright:weekly,en;fr,Europe/Paris,7\r\n"
    "not-an-address,wipo:daily,en,,\r\n"
    "ben@example.org,wipo:hourly,en,,\r\n"
    "cy@example.org,wipo:daily,xx,,\r\n"
    "dee@example.org,,en,,\r\n"
    "eve@example.org,wipo:daily,en,Mars/Base,\r\n"
    "fay@example.org,nope:daily,en,,\r\n"
    "gus@example.org,wipo,en,,25\r\n"
    "hal@example.org,wipo,en,,\r\n"
)


def count(session: Session, model: Any) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_export_lists_every_subscriber_with_topics_and_languages(session: Session) -> None:
    factories.subscriber(
        session,
        {"wipo": Frequency.IMMEDIATE, "copyright": Frequency.WEEKLY},
        email="a@example.org",
        languages=("en", "fr"),
    )
    factories.subscriber(
        session,
        ["patents"],
        email="=cmd|'/c calc'!A1@example.org",
        status=SubscriberStatus.UNSUBSCRIBED,
    )
    rows = list(csv.DictReader(io.StringIO("".join(subscriber_csv.export_rows(session)))))
    assert [row["email"] for row in rows] == ["a@example.org", "'=cmd|'/c calc'!A1@example.org"]
    assert rows[0]["topics"] == "copyright:weekly;wipo:immediate"
    assert rows[0]["languages"] == "en;fr" and rows[0]["status"] == "active"
    assert rows[1]["status"] == "unsubscribed"


def test_import_takes_valid_rows_and_reports_each_bad_one_by_line(session: Session) -> None:
    report = subscriber_csv.import_rows(session, GOOD_AND_BAD, "editor@example.org")
    assert report.imported == 2
    assert [line for line, _ in report.invalid] == [3, 4, 5, 6, 7, 8, 9]
    reasons = dict(report.invalid)
    assert "valid email" in reasons[3]
    assert reasons[4] == "unknown frequency 'hourly' for wipo"
    assert reasons[5] == "unknown language 'xx'"
    assert reasons[6] == "no topic"
    assert reasons[7] == "unknown time zone 'Mars/Base'"
    assert reasons[8] == "unknown topic 'nope'"
    assert reasons[9] == "send_hour must be 0 to 23, not '25'"
    ana = session.scalars(select(Subscriber).where(Subscriber.email == "ana@example.org")).one()
    assert ana.status is SubscriberStatus.ACTIVE and ana.timezone == "Europe/Paris"
    assert {s.topic.slug: s.frequency for s in ana.subscriptions} == {
        "wipo": Frequency.DAILY,
        "copyright": Frequency.WEEKLY,
    }
    [consent] = ana.consents
    assert (consent.source, consent.recorded_by) == ("import", "editor@example.org")
    # No half-imported row: only the two valid readers left anything behind.
    assert count(session, Subscriber) == 2 and count(session, Subscription) == 3


def test_import_skips_known_addresses_and_checks_the_header(session: Session) -> None:
    factories.subscriber(session, email="hal@example.org")
    report = subscriber_csv.import_rows(session, GOOD_AND_BAD, "x")
    assert (10, "hal@example.org is already a subscriber") in report.skipped
    bad = subscriber_csv.import_rows(session, "address,topic\r\nx@example.org,wipo\r\n", "x")
    assert bad.invalid == [(1, "missing column(s): email, languages, topics")]


def test_cli_import_with_progress_and_export(app: Flask, session: Session, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(GOOD_AND_BAD, encoding="utf-8")
    runner = app.test_cli_runner()
    result = runner.invoke(main, args=["subscribers", "import", str(source), "--by", "ops"])
    assert result.exit_code == 1  # some rows were invalid
    assert (
        "Importing" in result.output
        and "line 4: unknown frequency 'hourly' for wipo" in result.output
    )
    assert "2 imported, 0 already known, 7 invalid" in result.output
    target = tmp_path / "out.csv"
    exported = runner.invoke(main, args=["subscribers", "export", str(target)])
    assert exported.exit_code == 0 and "2 subscribers exported" in exported.output
    assert target.read_text(encoding="utf-8").startswith("email,status,topics,languages")


def login(client: FlaskClient) -> None:
    page = client.get("/admin/login").get_data(as_text=True)
    client.post("/admin/login", data={"csrf_token": csrf_from(page), "password": "admin"})


def test_admin_import_and_export(client: FlaskClient, session: Session) -> None:
    login(client)
    page = client.get("/admin/subscribers").get_data(as_text=True)
    response = client.post(
        "/admin/subscribers/import",
        data={
            "csrf_token": csrf_from(page),
            "file": (io.BytesIO(GOOD_AND_BAD.encode()), "list.csv"),
        },
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert "2 imported, 0 already known, 7 invalid" in html
    assert "<td>5</td><td>unknown language &#39;xx&#39;</td>" in html
    exported = client.get("/admin/subscribers.csv")
    assert exported.headers["Content-Disposition"] == 'attachment; filename="subscribers.csv"'
    assert exported.get_data(as_text=True).count("@example.org") == 2
    assert client.post("/admin/subscribers/import").status_code == 400  # no CSRF token


def test_suppressed_addresses_are_listed_and_can_be_reactivated(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    from alerts.sending import suppression

    reader = factories.subscriber(session, email="full@example.org")
    suppression.suppress(session, reader.id, "552 mailbox full")
    session.commit()
    login(client)
    page = client.get("/admin/subscribers").get_data(as_text=True)
    assert "full@example.org" in page and "bounced: 552 mailbox full" in page
    response = client.post(
        f"/admin/subscribers/{reader.id}/reactivate", data={"csrf_token": csrf_from(page)}
    )
    assert response.status_code == 302
    session.expire_all()
    assert reader.status is SubscriberStatus.PENDING
    [confirmation] = sink.store.to("full@example.org")
    assert confirmation.subject == "Confirm your IP Policy Watch news alerts"
    assert count(session, ConsentRecord) == 0


def test_export_then_import_keeps_addresses_that_look_like_formulas(session: Session) -> None:
    factories.subscriber(session, ["wipo"], email="-news@example.org")
    text = "".join(subscriber_csv.export_rows(session))
    assert "'-news@example.org" in text
    from alerts import subscriptions

    subscriptions.erase(session, session.query(Subscriber).one().id)
    session.commit()
    report = subscriber_csv.import_rows(session, text, "x")
    assert report.imported == 1
    assert session.query(Subscriber).one().email == "-news@example.org"


def test_odd_csv_files_are_reported_not_crashed_on(session: Session) -> None:
    mac = "email,topics,languages\rmac@example.org,wipo,en\r"
    assert subscriber_csv.import_rows(session, mac, "x").imported == 1
    huge = (
        "email,topics,languages\r\nok@example.org,wipo,en\r\nbig@example.org,wipo,"
        + "x" * 200_000
        + "\r\n"
    )
    report = subscriber_csv.import_rows(session, huge, "x")
    assert report.imported == 1
    assert report.invalid and "unreadable CSV" in report.invalid[0][1]


def test_a_header_cell_past_the_field_limit_is_reported_not_a_crash(
    app: Flask, session: Session, tmp_path: Path
) -> None:

    text = "email," + "x" * 140_000 + ",topics,languages\r\na@example.org,,wipo,en\r\n"
    report = subscriber_csv.import_rows(session, text, "test")
    assert report.imported == 0 and report.invalid[0][0] == 1
    assert "unreadable CSV header" in report.invalid[0][1]
    path = tmp_path / "wide.csv"
    path.write_text(text)
    result = app.test_cli_runner().invoke(main, args=["subscribers", "import", str(path)])
    assert result.exit_code == 1 and "unreadable CSV header" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_utf16_file_is_refused_clearly_by_the_cli(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes("email,topics,languages\r\na@example.org,wipo,en\r\n".encode("utf-16"))
    result = app.test_cli_runner().invoke(main, args=["subscribers", "import", str(path)])
    assert result.exit_code == 1
    assert "not UTF-8 text" in result.output
    assert isinstance(result.exception, SystemExit)
