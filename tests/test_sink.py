"""The SMTP sink's fault modes, over a real socket with smtplib: refusals by glob, lost acks."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alerts.devstack import free_port, mail_sink_argv
from alerts.mail.sink import DropRule, FailureRule, MailSink, MailStore

SENDER = "alerts@news.test"


def raw_message(recipient: str, subject: str = "Hello") -> bytes:
    return (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\nBody\r\n").encode()


@contextmanager
def running_sink(
    tmp_path: Path, fail: tuple[str, ...] = (), drop: tuple[str, ...] = ()
) -> Iterator[MailSink]:
    sink = MailSink(
        str(tmp_path / "mail"),
        port=free_port(),
        rules=[FailureRule.parse(text) for text in fail],
        drops=[DropRule.parse(text) for text in drop],
    )
    with sink:
        yield sink


def send(sink: MailSink, recipient: str, subject: str = "Hello") -> None:
    """One message on its own connection, as the sender opens a new one after a drop."""
    with smtplib.SMTP("127.0.0.1", sink.controller.port, timeout=10) as client:
        client.sendmail(SENDER, [recipient], raw_message(recipient, subject))


def refused_code(sink: MailSink, recipient: str) -> int:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(sink, recipient)
    code, _ = caught.value.recipients[recipient]
    return code


def test_glob_rule_refuses_each_matching_address_once(tmp_path: Path) -> None:
    with running_sink(tmp_path, fail=("*-soft@example.org=451x1",)) as sink:
        # The count is per address: b-soft is refused once even after a-soft used its refusal.
        assert refused_code(sink, "a-soft@example.org") == 451
        assert refused_code(sink, "B-Soft@Example.org") == 451
        send(sink, "a-soft@example.org")
        send(sink, "b-soft@example.org")
        send(sink, "other@example.org")
    assert sorted(m.recipients[0].lower() for m in sink.store.all()) == [
        "a-soft@example.org",
        "b-soft@example.org",
        "other@example.org",
    ]


def test_glob_rule_without_count_refuses_always(tmp_path: Path) -> None:
    with running_sink(tmp_path, fail=("*-gone@example.org=550",)) as sink:
        for _ in range(3):
            assert refused_code(sink, "x-gone@example.org") == 550
        assert refused_code(sink, "y-gone@example.org") == 550
    assert sink.store.all() == []


def test_exact_rule_still_works_and_wins_over_a_glob(tmp_path: Path) -> None:
    rules = ("*@example.org=550", "flaky@example.org=451x1")
    with running_sink(tmp_path, fail=rules) as sink:
        assert refused_code(sink, "flaky@example.org") == 451
        send(sink, "flaky@example.org")
        assert refused_code(sink, "someone@example.org") == 550
    assert [m.recipients for m in sink.store.all()] == [["flaky@example.org"]]


def test_drop_keeps_the_message_and_cuts_the_connection_before_the_reply(
    tmp_path: Path,
) -> None:
    with running_sink(tmp_path, drop=("*-lost@example.org",)) as sink:
        for number in range(2):
            with pytest.raises(smtplib.SMTPServerDisconnected):
                send(sink, "a-lost@example.org", subject=f"try {number}")
    messages = sink.store.all()
    assert [(m.subject, m.ack_lost) for m in messages] == [("try 0", True), ("try 1", True)]
    meta = json.loads((tmp_path / "mail" / f"{messages[0].id}.json").read_text())
    assert meta["ack_lost"] is True


def test_drop_with_count_drops_only_the_first_n_per_address(tmp_path: Path) -> None:
    with running_sink(tmp_path, drop=("*-lost@example.orgx2",)) as sink:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPServerDisconnected):
                send(sink, "a-lost@example.org")
        send(sink, "a-lost@example.org")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(sink, "b-lost@example.org")
        # The sink still serves after dropping connections.
        send(sink, "plain@example.org")
    assert [(m.recipients[0], m.ack_lost) for m in sink.store.all()] == [
        ("a-lost@example.org", True),
        ("a-lost@example.org", True),
        ("a-lost@example.org", False),
        ("b-lost@example.org", True),
        ("plain@example.org", False),
    ]


def test_plain_messages_are_not_ack_lost(tmp_path: Path) -> None:
    with running_sink(tmp_path) as sink:
        send(sink, "r@example.org")
    [message] = sink.store.all()
    assert message.ack_lost is False
    meta = json.loads((tmp_path / "mail" / f"{message.id}.json").read_text())
    assert meta["ack_lost"] is False


def test_envelope_without_ack_lost_reads_as_false(tmp_path: Path) -> None:
    # Folders written before drops existed.
    directory = tmp_path / "mail"
    directory.mkdir()
    meta = {
        "mail_from": SENDER,
        "recipients": ["r@example.org"],
        "received_at": "2024-01-01T00:00:00+00:00",
    }
    (directory / "00000000000000000001-abcdef01.json").write_text(json.dumps(meta))
    (directory / "00000000000000000001-abcdef01.eml").write_bytes(raw_message("r@example.org"))
    [message] = MailStore(str(directory)).all()
    assert message.ack_lost is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*-lost@example.org", DropRule("*-lost@example.org", None)),
        ("Box@Example.orgx3", DropRule("box@example.org", 3)),
        ("box@example.org", DropRule("box@example.org", None)),
    ],
)
def test_drop_rule_parse(text: str, expected: DropRule) -> None:
    assert DropRule.parse(text) == expected


@pytest.mark.parametrize("text", ["", "a b@example.org", "a@example.org=550"])
def test_bad_drop_rule_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a drop rule"):
        DropRule.parse(text)


def test_mail_sink_argv_passes_drops() -> None:
    argv = mail_sink_argv("127.0.0.1", 2525, "var/mail", drops=["*-lost@example.orgx1", "z@y.z"])
    assert argv[-4:] == ["--drop", "*-lost@example.orgx1", "--drop", "z@y.z"]
    assert "--drop" not in mail_sink_argv("127.0.0.1", 2525, "var/mail")
