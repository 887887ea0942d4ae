"""Publishing over HTTP reaches exactly the right readers, once, through real workers and SMTP."""

from __future__ import annotations

import os

import psutil
import pytest
from sqlalchemy import select

from alerts import db
from alerts.models import Delivery, DeliveryStatus, Frequency, Subscriber, SubscriberStatus

import factories
from processes import Browser, Stack


def readers(stack: Stack, **kinds: dict[str, object]) -> dict[str, Subscriber]:
    with stack.app.app_context():
        session = db.session()
        made = {}
        for name, options in kinds.items():
            made[name] = factories.subscriber(session, email=f"{name}@example.org", **options)  # type: ignore[arg-type]
        return made


def test_an_article_reaches_exactly_its_immediate_readers_once(
    stack: Stack, browser: Browser
) -> None:
    people = readers(
        stack,
        wipo=dict(topics=["wipo"]),
        two_topics=dict(topics=["wipo", "health-ip"]),
        parent=dict(topics=["venues"]),
        french_too=dict(topics=["wipo"], languages=("en", "fr")),
        weekly=dict(topics=["wipo"], frequency=Frequency.WEEKLY),
        other_topic=dict(topics=["patents"]),
        french_only=dict(topics=["wipo"], languages=("fr",)),
        pending=dict(topics=["wipo"], status=SubscriberStatus.PENDING),
        unsubscribed=dict(topics=["wipo"], status=SubscriberStatus.UNSUBSCRIBED),
    )
    status, body = browser.publish(
        factories.article_payload(topics=["WIPO", "Health & IP"], title="WIPO Assembly opens")
    )
    assert status == 201, body
    expected = {"wipo", "two_topics", "parent", "french_too"}
    stack.wait_for_mail(lambda m: m.subject == "WIPO Assembly opens", count=len(expected))
    stack.settle()
    for name, person in people.items():
        got = stack.to(person.email)
        assert len(got) == (1 if name in expected else 0), name
    [parent_mail] = stack.to(people["parent"].email)
    assert 'You get this because you follow "Venues"' in parent_mail.body("plain")
    assert parent_mail.parsed()["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The same guid again: stored as an update, nobody alerted a second time.
    status, again = browser.publish(
        factories.article_payload(
            guid=body["guid"], topics=["WIPO", "Health & IP"], title="WIPO Assembly opens (updated)"
        )
    )
    assert status == 200 and again["id"] == body["id"] and again["created"] is False
    stack.settle()
    assert len(stack.mail.all()) == len(expected)


@pytest.mark.sink_failures("flaky@example.org=451x1")
def test_a_temporary_refusal_is_retried_and_delivered_once(stack: Stack, browser: Browser) -> None:
    people = readers(stack, flaky=dict(topics=["wipo"]), steady=dict(topics=["wipo"]))
    status, _ = browser.publish(factories.article_payload(topics=["wipo"], title="Retry me"))
    assert status == 201
    stack.wait_for_mail(lambda m: m.subject == "Retry me", count=2)
    stack.settle()
    assert len(stack.to(people["flaky"].email)) == 1
    assert len(stack.to(people["steady"].email)) == 1
    with stack.app.app_context():
        row = db.session().scalar(
            select(Delivery).where(Delivery.subscriber_id == people["flaky"].id)
        )
        assert row is not None and row.status is DeliveryStatus.SENT and row.attempts == 2


@pytest.mark.sink_failures("gone@example.org=550")
def test_a_permanent_refusal_bounces_one_and_delivers_the_rest(
    stack: Stack, browser: Browser
) -> None:
    people = readers(
        stack, first=dict(topics=["wipo"]), gone=dict(topics=["wipo"]), last=dict(topics=["wipo"])
    )
    status, _ = browser.publish(factories.article_payload(topics=["wipo"], title="Bounce one"))
    assert status == 201
    stack.wait_for_mail(lambda m: m.subject == "Bounce one", count=2)
    stack.settle()
    assert len(stack.to(people["first"].email)) == 1 and len(stack.to(people["last"].email)) == 1
    assert stack.to(people["gone"].email) == []
    with stack.app.app_context():
        session = db.session()
        gone = session.get(Subscriber, people["gone"].id)
        assert gone is not None and gone.status is SubscriberStatus.BOUNCED
        row = session.scalar(select(Delivery).where(Delivery.subscriber_id == gone.id))
        assert row is not None and row.status is DeliveryStatus.BOUNCED and row.attempts == 1

    # Suppressed: the next article does not even try that address.
    browser.publish(factories.article_payload(topics=["wipo"], title="After the bounce"))
    stack.wait_for_mail(lambda m: m.subject == "After the bounce", count=2)
    stack.settle()
    assert stack.to(people["gone"].email) == []


def test_one_click_unsubscribe_stops_the_next_alert(stack: Stack, browser: Browser) -> None:
    people = readers(stack, leaving=dict(topics=["wipo"]), staying=dict(topics=["wipo"]))
    browser.publish(factories.article_payload(topics=["wipo"], title="First"))
    [first] = stack.wait_for_mail(
        lambda m: m.subject == "First" and people["leaving"].email in m.recipients
    )
    header = first.parsed()["List-Unsubscribe"]
    url = str(header).strip().strip("<>")
    assert url.startswith(f"{stack.base_url}/unsubscribe/")
    # What a mailbox provider does for RFC 8058: a POST, no cookies, no CSRF token.
    status, page = Browser(stack.base_url).request(url, {"List-Unsubscribe": "One-Click"})
    assert status == 200 and "You are unsubscribed" in page

    browser.publish(factories.article_payload(topics=["wipo"], title="Second"))
    stack.wait_for_mail(lambda m: m.subject == "Second")
    stack.settle()
    assert [m.subject for m in stack.to(people["leaving"].email)] == ["First"]
    assert sorted(m.subject for m in stack.to(people["staying"].email)) == ["First", "Second"]


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_the_workers_run_as_batch_work_so_they_do_not_preempt_the_relay(stack: Stack) -> None:
    """A worker woken by a reply must not take the CPU from the web process or a local relay:
    the worker and every process of its pool run under SCHED_BATCH."""
    [worker] = [p for p in stack.processes if p.name == "worker" and p.running()]
    assert worker.process is not None
    tree = psutil.Process(worker.process.pid)
    pool = tree.children(recursive=True)
    assert pool, "the worker's pool has no processes"
    for process in [tree, *pool]:
        assert os.sched_getscheduler(process.pid) == os.SCHED_BATCH, process.cmdline()
