"""A reader signs up in a browser, reads the confirmation email, follows the link: active."""

from __future__ import annotations

from sqlalchemy import select

from alerts import db
from alerts.models import Subscriber, SubscriberStatus

from processes import Browser, Stack
from support import confirm_link_in, csrf_from


def test_signup_confirm_over_real_processes(stack: Stack, browser: Browser) -> None:
    status, form = browser.request("/")
    assert status == 200
    status, page = browser.request(
        "/subscribe",
        {
            "csrf_token": csrf_from(form),
            "email": "reader@example.org",
            "topics": ["wipo", "health-ip"],
            "languages": ["en", "fr"],
            "frequency": "weekly",
        },
    )
    assert status == 200 and "Check your email" in page

    [message] = stack.wait_for_mail(lambda m: "reader@example.org" in m.recipients)
    assert message.subject == "Confirm your IP Policy Watch news alerts"
    status, page = browser.request(confirm_link_in(message.body("plain")))
    assert status == 200 and "You are signed up" in page
    assert "WIPO" in page and "Health &amp; IP" in page and "Once a week" in page

    with stack.app.app_context():
        subscriber = db.session().scalars(select(Subscriber)).one()
        assert subscriber.status is SubscriberStatus.ACTIVE
        assert subscriber.language_codes == ["en", "fr"]
    # Then the welcome, with the way back to the settings; nothing else, nothing twice.
    [welcome] = stack.wait_for_mail(lambda m: m.subject.startswith("Welcome to"))
    assert "/manage/" in welcome.body("plain")
    stack.settle()
    assert len(stack.mail.all()) == 2
