"""A digest run killed half way and started again completes, each reader once (real worker)."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest

from alerts import articles, db
from alerts.clock import now
from alerts.devstack import wait_for
from alerts.models import Frequency

import factories
from processes import Browser, Stack

HELD = "reader-held@example.org"
AUTH = {"Authorization": "Bearer dev-api-token"}


@pytest.mark.sink_hold(HELD)
@pytest.mark.settings(ALERTS_SEND_STALE_AFTER="2")
def test_a_killed_run_started_again_sends_only_what_is_missing(
    stack: Stack, browser: Browser
) -> None:
    with stack.app.app_context():
        session = db.session()
        readers = [
            factories.subscriber(
                session,
                ["wipo"],
                frequency=Frequency.DAILY,
                email=HELD if number == 14 else f"reader-{number:02d}@example.org",
                confirmed_at=now() - timedelta(days=1),
            )
            for number in range(30)
        ]
        daily = factories.article(session, published_at=now(), topics=["wipo"], title="Daily")
        articles.alert_nobody(session, daily.id)  # no immediate reader: nothing to fan out
        session.commit()
        emails = [reader.email for reader in readers]

    status, body = browser.request(
        "/api/v1/digests", json_body={"frequency": "daily"}, headers=AUTH
    )
    assert status == 202, body
    run = json.loads(body)
    assert run["existing"] is False and run["total"] == 30

    # Readers go out in id order; the sink leaves the 15th hanging: kill the worker there.
    assert stack.directory is not None
    marker = stack.directory / "mail" / f"holding-{HELD}"
    wait_for(marker.exists, 60, "the held reader")
    stack.kill_worker()
    sent_before = {m.recipients[0] for m in stack.mail.all()}
    assert sent_before == set(emails[:14])

    stack.start_worker()
    status, body = browser.request(
        "/api/v1/digests", json_body={"frequency": "daily"}, headers=AUTH
    )
    again = json.loads(body)
    assert status == 202 and again["existing"] is True and again["id"] == run["id"]

    def finished() -> bool:
        _, body = browser.request(f"/api/v1/digests/{run['id']}", headers=AUTH)
        return bool(json.loads(body)["done"])

    wait_for(finished, 60, "the run to finish")
    stack.settle(count_unacked=False)
    received = [m.recipients[0] for m in stack.mail.all()]
    assert sorted(received) == sorted(emails)  # everyone, once
    _, body = browser.request(f"/api/v1/digests/{run['id']}", headers=AUTH)
    final = json.loads(body)
    assert (final["sent"], final["failed"], final["remaining"]) == (30, 0, 0)
    assert not [name for name in os.listdir(stack.directory / "mail") if name.endswith(".tmp")]
