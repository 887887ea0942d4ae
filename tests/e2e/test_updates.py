"""An article changed after it went out, on real parts: a Celery worker on an embedded Redis,
a real SMTP sink, articles and digest runs over HTTP. The alert's reader gets one short
correction email; the digest's reader sees the change once in their next digest."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts import db
from alerts.clock import now
from alerts.devstack import wait_for
from alerts.models import ArticleRevision, Frequency

import factories
from processes import Browser, Stack

AUTH = {"Authorization": "Bearer dev-api-token"}
INSTANT, DIGEST = "instant@example.org", "weekly-and-daily@example.org"
FIRST = "WIPO members agree a treaty on designs"
CORRECTED = "WIPO members agree a treaty on industrial designs"


def digest_run(browser: Browser, frequency: str) -> None:
    status, body = browser.request(
        "/api/v1/digests", json_body={"frequency": frequency}, headers=AUTH
    )
    assert status == 202, body
    run = json.loads(body)

    def done() -> bool:
        _, body = browser.request(f"/api/v1/digests/{run['id']}", headers=AUTH)
        return bool(json.loads(body)["done"])

    wait_for(done, 60, f"the {frequency} run to finish")


@pytest.mark.timeout(300)
def test_a_correction_reaches_each_reader_once_by_the_way_they_got_the_article(
    stack: Stack, browser: Browser
) -> None:
    with stack.app.app_context():
        session = db.session()
        factories.subscriber(session, ["wipo"], email=INSTANT)
        # Follows WIPO weekly and ITU daily: the weekly digest carries the article, the
        # daily one (the next digest) tells of its change.
        factories.subscriber(
            session,
            {"wipo": Frequency.WEEKLY, "itu-icann": Frequency.DAILY},
            email=DIGEST,
            confirmed_at=now() - timedelta(days=2),
        )
        session.commit()
    story = factories.article_payload(
        guid="https://news.example.org/?p=designs", title=FIRST, topics=["WIPO"], published_at=None
    )
    status, body = browser.publish(story)
    assert status == 201, body
    [alert] = stack.wait_for_mail(lambda m: INSTANT in m.recipients)
    assert alert.subject == FIRST
    digest_run(browser, "weekly")
    [weekly] = stack.wait_for_mail(lambda m: DIGEST in m.recipients)
    assert FIRST in weekly.body("plain")

    corrected = {**story, "title": CORRECTED, "correction": "It is about designs, not patents."}
    status, body = browser.publish(corrected)
    assert status == 200 and body["revision"]["correction"] is True, body
    [correction] = stack.wait_for_mail(
        lambda m: INSTANT in m.recipients and m.subject.startswith("Correction")
    )
    assert correction.subject == f"Correction: {CORRECTED}"
    assert f"The headline we sent you: \u201c{FIRST}\u201d" in correction.body("plain")
    # The publisher's script sends it again: the same change, told to nobody again.
    status, body = browser.publish(corrected)
    assert status == 200 and body["revision"] is None, body

    digest_run(browser, "daily")
    [daily] = stack.wait_for_mail(lambda m: DIGEST in m.recipients and "updated" in m.subject)
    text = daily.body("plain")
    assert "== Updated since we sent it ==" in text and CORRECTED in text
    with stack.app.app_context():
        changed = db.session().scalars(select(ArticleRevision.created_at)).one()
    headline = f"The headline we sent you: \u201c{FIRST}\u201d."
    assert f"[Correction] Updated on {changed:%-d %B %Y}. {headline}" in text
    assert "What the editors say: It is about designs, not patents." in text

    stack.settle()
    assert [m.subject for m in stack.to(INSTANT)] == [FIRST, f"Correction: {CORRECTED}"]
    assert len(stack.to(DIGEST)) == 2  # the weekly digest and the daily one, nothing more
