"""After confirming, a reader can reach their settings: the welcome email and the confirmed
page both carry the preference centre's link, and restate what they follow."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from alerts.mail import emails
from alerts.mail.sink import MailSink
from alerts.models import Subscriber

from support import confirm_link_in, csrf_from, translated


def sign_up(client: FlaskClient, sink: MailSink, address: str, locale: str = "en") -> str:
    form = client.get(f"/?lang={locale}").get_data(as_text=True)
    client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(form),
            "email": address,
            "topics": ["wipo", "health-ip"],
            "languages": ["en"],
            "frequency": "daily",
            "keywords": "TRIPS waiver",
            "locale": locale,
        },
    )
    [confirmation] = sink.store.to(address)
    # It restates the topics asked for (ours), never the keywords (typed by whoever signed up).
    assert ("* WIPO" in confirmation.body("plain")) is (locale == "en")
    assert "TRIPS" not in confirmation.body("plain")
    return confirm_link_in(confirmation.body("plain")).removeprefix("http://alerts.test")


def test_confirming_sends_one_welcome_with_the_settings_link(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    link = sign_up(client, sink, "reader@example.org")
    page = client.get(link).get_data(as_text=True)
    # The confirmed page: the keyword too, and a way into the preference centre.
    assert "TRIPS waiver" in page and "Once a day" in page
    manage = re.search(r'href="(/manage/[^"]+)"', page)
    assert manage and client.get(manage.group(1)).status_code == 200

    _confirmation, welcome = sink.store.to("reader@example.org")
    assert welcome.subject == "Welcome to IP Policy Watch news alerts"
    text = welcome.body("plain")
    assert "* WIPO: Once a day" in text and "* Health & IP: Once a day" in text
    assert '* "TRIPS waiver": Once a day' in text
    settings = re.search(r"http://alerts.test(/manage/\S+)", text)
    assert settings and client.get(settings.group(1)).status_code == 200
    assert welcome.parsed()["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The link again, or the task again: still one welcome.
    client.get(link)
    reader = session.query(Subscriber).filter_by(email="reader@example.org").one()
    assert reader.welcomed_at is not None
    assert emails.send_welcome(session, settings_of(client), reader.id) is None
    assert len(sink.store.to("reader@example.org")) == 2


def test_the_welcome_speaks_the_readers_language(client: FlaskClient, sink: MailSink) -> None:
    client.get(sign_up(client, sink, "lecteur@example.org", locale="fr"))
    _, welcome = sink.store.to("lecteur@example.org")
    assert welcome.subject == translated("fr", "Welcome to %(site)s news alerts") % {
        "site": "IP Policy Watch"
    }
    assert "* OMPI: Une fois par jour" in welcome.body("plain")


def settings_of(client: FlaskClient) -> Any:
    return emails.MailSettings.from_config(client.application.config)
