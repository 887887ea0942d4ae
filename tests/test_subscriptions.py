"""The signup domain: validation, pending/active/unsubscribed flows, confirmation, housekeeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import subscriptions
from alerts.errors import InvalidInput
from alerts.models import Frequency, Subscriber, SubscriberStatus
from alerts.subscriptions import Choices, ConfirmResult, Consent

HOUR = timedelta(hours=1)
CONSENT = Consent(form_version="test-form", ip_address="192.0.2.1", user_agent="pytest")


def choices(
    *topics: str, frequency: Frequency = Frequency.DAILY, languages: tuple[str, ...] = ("en",)
) -> Choices:
    return Choices(tuple(topics), languages, frequency)


def signup(session: Session, email: str = "reader@example.org", **kwargs: Any) -> Any:
    request = subscriptions.subscribe(
        session, email, kwargs.pop("wanted", choices("wipo")), CONSENT, resend_interval=HOUR
    )
    session.commit()
    return request


def test_normalize_email_lowercases_the_domain_only() -> None:
    assert subscriptions.normalize_email("  Jane.Doe@Example.ORG ") == "Jane.Doe@example.org"


@pytest.mark.parametrize(
    "address",
    [
        "no-at-sign",
        "a@b",
        "reader\N{FULLWIDTH COMMERCIAL AT}example.org",
        "reader@example.org\r\nBcc: victim@example.org",
        "reader\0@example.org",
        "x" * 300 + "@example.org",
        '"quoted local"@example.org',
        "reader@[192.0.2.1]",
    ],
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        subscriptions.normalize_email(address)
    assert "email" in raised.value.errors


def test_validate_reports_every_bad_field_at_once(session: Session) -> None:
    with pytest.raises(InvalidInput) as raised:
        subscriptions.validate(session, "bad", ["nope"], ["xx"], "hourly")
    assert set(raised.value.errors) == {"email", "topics", "languages", "frequency"}


def test_validate_dedupes_and_keeps_order(session: Session) -> None:
    email, wanted = subscriptions.validate(
        session, "r@example.org", ["wipo", "copyright", "wipo"], ["fr", "en", "fr"], "weekly"
    )
    assert email == "r@example.org"
    assert wanted == Choices(("wipo", "copyright"), ("fr", "en"), Frequency.WEEKLY)


def test_new_signup_is_pending_with_consent(session: Session) -> None:
    request = signup(session, wanted=choices("wipo", "health-ip", languages=("en", "fr")))
    subscriber = session.get(Subscriber, request.subscriber_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.confirm_nonce == request.nonce
    assert subscriber.language_codes == ["en", "fr"]
    [consent] = subscriber.consents
    assert (consent.action, consent.ip_address, consent.form_version) == (
        "signup",
        "192.0.2.1",
        "test-form",
    )


def test_a_new_reader_has_the_models_defaults_and_a_link_key_of_their_own(
    session: Session,
) -> None:
    """A signup is written by prepared INSERTs naming only what the form gives: every other
    column still takes the model's default, a function's called for each reader."""
    first, second = signup(session, "one@example.org"), signup(session, "two@example.org")
    readers = [session.get(Subscriber, request.subscriber_id) for request in (first, second)]
    for reader in readers:
        assert reader is not None
        assert (reader.send_hour, reader.send_weekday) == (8, 0)
        assert reader.urgent_in_quiet and reader.corrections
        assert reader.link_key and len(reader.link_key) == 16
        [subscription] = reader.subscriptions
        assert subscription.frequency is Frequency.DAILY and subscription.topic.slug == "wipo"
    assert readers[0].link_key != readers[1].link_key  # type: ignore[union-attr]


def test_addresses_are_unique_whatever_their_case(session: Session) -> None:
    first = signup(session, "Reader@example.org")
    second = signup(session, "READER@EXAMPLE.ORG")
    assert second is None  # same subscriber, throttled
    assert len(session.scalars(select(Subscriber)).all()) == 1
    assert first is not None


def test_pending_resignup_within_the_hour_sends_nothing_new(
    session: Session, frozen_clock: Any
) -> None:
    first = signup(session)
    assert signup(session, wanted=choices("patents")) is None
    frozen_clock.advance(timedelta(minutes=59))
    assert signup(session) is None
    frozen_clock.advance(timedelta(minutes=2))
    again = signup(session)
    assert again is not None and again.nonce == first.nonce


def test_confirm_activates_once(session: Session) -> None:
    request = signup(session)
    result, subscriber = subscriptions.confirm(
        session, request.subscriber_id, request.nonce, None, CONSENT
    )
    assert result is ConfirmResult.CONFIRMED
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirm_nonce is None
    assert [c.action for c in subscriber.consents] == ["signup", "confirm"]
    result, _ = subscriptions.confirm(session, request.subscriber_id, request.nonce, None, CONSENT)
    assert result is ConfirmResult.ALREADY_CONFIRMED


def test_confirm_with_a_wrong_nonce_is_spent(session: Session) -> None:
    request = signup(session)
    result, subscriber = subscriptions.confirm(
        session, request.subscriber_id, "0" * 16, None, CONSENT
    )
    assert result is ConfirmResult.SPENT
    assert subscriber.status is SubscriberStatus.PENDING


def test_confirm_for_an_erased_subscriber_is_not_valid(session: Session) -> None:
    with pytest.raises(subscriptions.LinkNotValid):
        subscriptions.confirm(session, 9999, "00", None, CONSENT)


def test_active_reader_gets_a_change_link_that_merges(session: Session, frozen_clock: Any) -> None:
    request = signup(session, wanted=choices("wipo", frequency=Frequency.IMMEDIATE))
    subscriptions.confirm(session, request.subscriber_id, request.nonce, None, CONSENT)
    session.commit()
    frozen_clock.advance(2 * HOUR)
    change = signup(
        session, wanted=choices("wipo", "copyright", frequency=Frequency.WEEKLY, languages=("fr",))
    )
    assert change is not None and change.changes is not None
    subscriber = session.get(Subscriber, request.subscriber_id)
    assert subscriber is not None
    assert {s.topic.slug for s in subscriber.subscriptions} == {"wipo"}

    result, subscriber = subscriptions.confirm(
        session, change.subscriber_id, change.nonce, change.changes, CONSENT
    )
    assert result is ConfirmResult.CHANGED
    assert {s.topic.slug: s.frequency for s in subscriber.subscriptions} == {
        "wipo": Frequency.WEEKLY,
        "copyright": Frequency.WEEKLY,
    }
    assert subscriber.language_codes == ["en", "fr"]
    result, _ = subscriptions.confirm(
        session, change.subscriber_id, change.nonce, change.changes, CONSENT
    )
    assert result is ConfirmResult.SPENT


def test_unsubscribed_reader_who_signs_up_again_confirms_again(
    session: Session, frozen_clock: Any
) -> None:
    request = signup(session)
    subscriptions.confirm(session, request.subscriber_id, request.nonce, None, CONSENT)
    subscriber = session.get(Subscriber, request.subscriber_id)
    assert subscriber is not None
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    assert signup(session, wanted=choices("patents")) is None  # still one email an hour
    frozen_clock.advance(2 * HOUR)
    again = signup(session, wanted=choices("patents"))
    assert again is not None and again.changes is None
    session.refresh(subscriber)
    assert subscriber.status is SubscriberStatus.PENDING
    assert [s.topic.slug for s in subscriber.subscriptions] == ["patents"]


def test_purge_removes_only_old_unconfirmed_signups(session: Session, frozen_clock: Any) -> None:
    old = signup(session, "old@example.org")
    confirmed = signup(session, "kept@example.org")
    subscriptions.confirm(session, confirmed.subscriber_id, confirmed.nonce, None, CONSENT)
    session.commit()
    frozen_clock.advance(timedelta(days=31))
    recent = signup(session, "recent@example.org")
    assert subscriptions.purge_unconfirmed(session, timedelta(days=30)) == 1
    session.commit()
    remaining = set(session.scalars(select(Subscriber.id)))
    assert remaining == {confirmed.subscriber_id, recent.subscriber_id}
    assert old.subscriber_id not in remaining


def test_a_suppressed_address_comes_back_only_through_an_admin(
    session: Session, frozen_clock: Any
) -> None:
    request = signup(session)
    subscriptions.confirm(session, request.subscriber_id, request.nonce, None, CONSENT)
    subscriber = session.get(Subscriber, request.subscriber_id)
    assert subscriber is not None
    subscriber.status = SubscriberStatus.BOUNCED
    session.commit()
    frozen_clock.advance(2 * HOUR)
    assert signup(session) is None
    session.refresh(subscriber)
    assert subscriber.status is SubscriberStatus.BOUNCED
    assert subscriptions.reactivate(session, subscriber.id, HOUR) is not None
    assert subscriber.status is SubscriberStatus.PENDING


def test_keywords_from_the_form_reach_an_active_reader_through_the_change_link(
    session: Session, frozen_clock: Any
) -> None:
    request = signup(session)
    subscriptions.confirm(session, request.subscriber_id, request.nonce, None, CONSENT)
    session.commit()
    frozen_clock.advance(2 * HOUR)
    change = signup(session, wanted=Choices((), ("en",), Frequency.DAILY, ("ICANN",), False))
    assert change is not None and change.changes is not None
    changes = Choices.from_payload(change.changes.as_payload())
    _, subscriber = subscriptions.confirm(
        session, change.subscriber_id, change.nonce, changes, CONSENT
    )
    assert [(k.phrase, k.frequency) for k in subscriber.keywords] == [("ICANN", Frequency.DAILY)]
