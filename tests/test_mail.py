"""Rendering, MIME building and SMTP settings."""

from __future__ import annotations

import email
import email.policy
import smtplib
from typing import Any

import pytest

from alerts.mail import message, smtp
from alerts.mail.render import EmailRenderer, RenderedEmail
from alerts.mail.sink import MailSink

RENDERED = RenderedEmail(subject="Hello", text="Plain text\n", html="<p>HTML</p>\n")


def test_renderer_escapes_html_and_inlines_css() -> None:
    rendered = EmailRenderer().render(
        "confirm",
        {
            "site_name": "<b>Site</b>",
            "confirm_url": "https://a.test/confirm/x?a=1&b=2",
            "is_change": False,
            "valid_days": 7,
            "base_url": "https://a.test",
            "asked": [("<i>Topic</i>", "Once a day")],
        },
    )
    assert "&lt;b&gt;Site&lt;/b&gt;" in rendered.html
    assert "&lt;i&gt;Topic&lt;/i&gt;" in rendered.html and "<i>" not in rendered.html
    assert 'href="https://a.test/confirm/x?a=1&amp;b=2"' in rendered.html
    assert 'class="button"' in rendered.html and "style=" in rendered.html
    assert "<b>Site</b>" in rendered.text  # text parts are not HTML
    assert "\n" not in rendered.subject


def test_message_is_multipart_with_crlf_line_endings() -> None:
    raw = message.build(RENDERED, sender="News <alerts@news.test>", recipient="r@example.org")
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["From"] == "News <alerts@news.test>"
    assert parsed["Message-ID"].endswith("@news.test>")


def test_non_ascii_subject_is_encoded() -> None:
    rendered = RenderedEmail(subject="Alertes : propriété intellectuelle", text="t", html="h")
    raw = message.build(rendered, sender="a@news.test", recipient="r@example.org")
    assert b"=?utf-8?q?" in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Alertes : propriété intellectuelle"


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject", "Hi\r\nBcc: victim@example.org"), ("recipient", "r@example.org\nBcc: x@y.z")],
)
def test_header_injection_is_refused(field: str, value: str) -> None:
    rendered = RenderedEmail(subject=value if field == "subject" else "ok", text="t", html="h")
    recipient = value if field == "recipient" else "r@example.org"
    with pytest.raises(message.HeaderInjection):
        message.build(rendered, sender="a@news.test", recipient=recipient)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:8025", smtp.SmtpSettings("127.0.0.1", 8025, "none")),
        (
            "smtp+starttls://user%40x:p%3Ass@mail.example.org",
            smtp.SmtpSettings("mail.example.org", 587, "starttls", "user@x", "p:ss"),
        ),
        (
            "smtps://u:p@mail.example.org:2465",
            smtp.SmtpSettings("mail.example.org", 2465, "ssl", "u", "p"),
        ),
    ],
)
def test_smtp_url(url: str, expected: smtp.SmtpSettings) -> None:
    assert smtp.SmtpSettings.from_url(url) == expected


def test_smtp_url_with_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="ALERTS_SMTP_URL"):
        smtp.SmtpSettings.from_url("http://mail.example.org")


def test_one_connection_sends_many_messages(sink: MailSink) -> None:
    settings = smtp.SmtpSettings("127.0.0.1", sink.controller.port, "none")
    with smtp.connect(settings) as mailer:
        for number in range(3):
            raw = message.build(RENDERED, sender="a@news.test", recipient=f"r{number}@example.org")
            assert mailer.send(raw, "a@news.test", f"r{number}@example.org") is None
    assert sorted(m.recipients[0] for m in sink.store.all()) == [
        "r0@example.org",
        "r1@example.org",
        "r2@example.org",
    ]


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_reader_between_two_others_on_one_connection(
    tmp_path: Any, pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PIPELINING (the envelope and DATA in one write) or without, a refused address
    is returned as a refusal, its pending DATA is answered and dropped, and the connection
    goes on to the next reader."""
    from alerts.devstack import free_port
    from alerts.mail.sink import FailureRule

    if not pipelining:
        monkeypatch.setattr(smtp.Mailer, "pipelining", property(lambda self: False))
    rules = [FailureRule("r1@example.org", 550), FailureRule("r2@example.org", 451)]
    with MailSink(str(tmp_path / "mail"), port=free_port(), rules=rules) as sink:
        settings = smtp.SmtpSettings("127.0.0.1", sink.controller.port, "none")
        answers = []
        with smtp.connect(settings) as mailer:
            for number in range(4):
                address = f"r{number}@example.org"
                raw = message.build(RENDERED, sender="a@news.test", recipient=address)
                answers.append(mailer.send(raw, "a@news.test", address))
            assert mailer.pipelining is pipelining  # known since the EHLO
        delivered = sorted(m.recipients[0] for m in sink.store.all())
    assert answers[0] is None and answers[3] is None
    assert answers[1] is not None and answers[1].permanent and answers[1].code == 550
    assert answers[2] is not None and not answers[2].permanent and answers[2].code == 451
    assert delivered == ["r0@example.org", "r3@example.org"]


def test_an_address_smtp_cannot_carry_is_refused_not_sent(sink: MailSink) -> None:
    """A stored address with a line break or angle bracket (never from the forms, which
    validate it) bounces as a relay would refuse it, and the connection goes on."""
    settings = smtp.SmtpSettings("127.0.0.1", sink.controller.port, "none")
    raw = message.build(RENDERED, sender="a@news.test", recipient="ok@example.org")
    with smtp.connect(settings) as mailer:
        for bad in ("x@example.org>\r\nRCPT TO:<y@example.org", "a<b@example.org"):
            rejection = mailer.send(raw, "a@news.test", bad)
            assert rejection is not None and rejection.permanent and rejection.code == 553
        assert mailer.send(raw, "a@news.test", "ok@example.org") is None
        with pytest.raises(smtplib.SMTPSenderRefused):
            mailer.send(raw, "a@news.test>\r\nRSET", "ok@example.org")
    assert [m.recipients for m in sink.store.all()] == [["ok@example.org"]]


def test_starttls_verifies_certificates(sink: MailSink) -> None:
    # The sink offers no TLS: asking for STARTTLS must fail, never fall back to plain text.
    settings = smtp.SmtpSettings("127.0.0.1", sink.controller.port, "starttls")
    with pytest.raises(smtplib.SMTPNotSupportedError), smtp.connect(settings):
        pass


def test_list_id_encodes_only_its_phrase_with_a_real_site_name() -> None:
    import email
    import email.policy

    from alerts.mail import message
    from alerts.mail.render import RenderedEmail

    raw = message.build(
        RenderedEmail("Subject", "text", "<p>html</p>"),
        sender="Veille PI <alertes@veille.example.org>",
        recipient="lea@example.org",
        headers={"List-Id": "Veille PI — Genève news alerts <news-alerts.veille.example.org>"},
    )
    header_line = next(
        line for line in raw.decode("ascii").split("\r\n") if line.startswith("List-Id:")
    )
    assert header_line.endswith(" <news-alerts.veille.example.org>")
    assert "=?utf-8?" in header_line  # the phrase, and only it, is encoded
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["List-Id"]) == (
        "Veille PI — Genève news alerts <news-alerts.veille.example.org>"
    )


def test_the_date_says_utc_and_the_sender_names_the_site() -> None:
    raw = message.build(RENDERED, sender="IP Watch news alerts <a@news.test>", recipient="r@x.org")
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    [date] = [line for line in head.split("\r\n") if line.startswith("Date: ")]
    assert date.endswith(" +0000")  # UTC, not "-0000" (a zone unknown)
    from alerts import config

    settings = {**config.defaults(), "SITE_NAME": "IP Watch"}
    config.normalize(settings)
    assert settings["MAIL_FROM"] == "IP Watch news alerts <alerts@localhost>"


def test_a_worker_compiles_every_email_template_before_its_first_task() -> None:
    """Warmed up once before the pool forks, every language's templates are compiled: the
    first alert after a start renders nothing from scratch."""
    from celery import signals

    from alerts import i18n
    from worker import celery_app

    fresh = EmailRenderer()
    fresh.warm_up()
    for code in i18n.LOCALES:
        with i18n.using(code):
            cache = fresh.env.cache
            assert cache is not None
            assert {key[1] for key in cache} >= {
                f"email/{name}/{part}"
                for name in ("alert", "digest", "welcome", "confirm", "correction", "roundup")
                for part in ("subject.txt", "body.txt", "body.html")
            }
    receivers = [ref() for _, ref in signals.worker_init.receivers]
    assert celery_app._warm_up in receivers
