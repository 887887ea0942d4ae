"""A reader signs up in Arabic over real processes: every email after is Arabic, right to
left; and in Chromium the Arabic pages lay out right to left."""

from __future__ import annotations

import re

from sqlalchemy import select

from alerts import db, i18n
from alerts.models import Subscriber

import factories
from processes import Browser, Stack
from support import confirm_link_in, csrf_from, translated

ARABIC = re.compile(r"[\u0600-\u06ff]")


def test_signup_in_arabic_then_every_email_is_arabic_and_right_to_left(
    stack: Stack, browser: Browser
) -> None:
    arabic = {"Accept-Language": "ar,en;q=0.5"}
    status, form = browser.request("/", headers=arabic)
    assert status == 200 and '<html lang="ar" dir="rtl">' in form
    status, page = browser.request(
        "/subscribe",
        {
            "csrf_token": csrf_from(form),
            "email": "qari@example.org",
            "topics": ["wipo"],
            "languages": ["en", "ar"],
            "frequency": "immediate",
            "locale": "ar",
        },
        headers=arabic,
    )
    assert status == 200 and translated("ar", "Check your email") in page

    [confirmation] = stack.wait_for_mail(lambda m: "qari@example.org" in m.recipients)
    site = stack.app.config["SITE_NAME"]
    assert confirmation.subject == translated("ar", "Confirm your %(site)s news alerts") % {
        "site": site
    }
    assert ARABIC.search(confirmation.subject)
    assert '<html lang="ar" dir="rtl">' in confirmation.body("html")
    status, page = browser.request(confirm_link_in(confirmation.body("plain")), headers=arabic)
    assert status == 200 and translated("ar", "You are signed up") in page
    assert "الويبو" in page  # WIPO, by its Arabic name

    status, body = browser.publish(
        factories.article_payload(
            topics=["WIPO"],
            title="WIPO General Assembly opens in Geneva",
            published_at="2026-11-28T09:30:00Z",
        )
    )
    assert status == 201, body
    [alert] = stack.wait_for_mail(
        lambda m: "qari@example.org" in m.recipients and "WIPO General" in m.subject
    )
    html, text = alert.body("html"), alert.body("plain")
    assert '<html lang="ar" dir="rtl">' in html
    assert '<h1 dir="auto"' in html  # the English title keeps its own direction
    assert "28 نوفمبر 2026" in text  # the date, in Arabic
    assert translated("ar", "Read the article") in text
    with stack.app.app_context():
        reader = db.session().scalars(select(Subscriber)).one()
        assert reader.locale == "ar"
    # The confirmation, the welcome (Arabic too), the alert: nothing else, nothing twice.
    mail = stack.to("qari@example.org")
    assert len(mail) == 3
    welcome = next(
        m
        for m in mail
        if m.subject.startswith(translated("ar", "Welcome to %(site)s news alerts")[:6])
    )
    assert '<html lang="ar" dir="rtl">' in welcome.body("html")


def test_the_arabic_signup_page_lays_out_right_to_left_in_chromium(stack: Stack) -> None:
    from browser import chromium, screenshot

    with chromium() as browser:
        for width in (1280, 390):
            page = browser.new_page(viewport={"width": width, "height": 900})
            for code in ("ar", "en"):
                page.goto(f"{stack.base_url}/?lang={code}")
                main = page.locator("main").bounding_box()
                field = page.locator("#email").bounding_box()
                label = page.locator("label[for=email]").bounding_box()
                assert main and field and label
                padding = 20
                if code == "ar":
                    # The field and its label start at the right edge of the column.
                    assert (
                        abs(field["x"] + field["width"] - (main["x"] + main["width"] - padding)) < 3
                    )
                    assert (
                        abs(label["x"] + label["width"] - (main["x"] + main["width"] - padding)) < 3
                    )
                    if width == 1280:
                        assert field["x"] > main["x"] + main["width"] / 3
                else:
                    assert abs(field["x"] - (main["x"] + padding)) < 3
                # Nothing scrolls sideways, in either direction.
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                assert page.evaluate("getComputedStyle(document.body).direction") == (
                    i18n.direction(code)
                )
                page.screenshot(path=str(screenshot(f"signup-{code}-{width}.png")), full_page=True)
            page.close()
