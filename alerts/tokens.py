"""Signed links: one itsdangerous salt per purpose, so a token for one job opens no other."""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from alerts.clock import now
from alerts.errors import AlertsError


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"
    DIGEST = "digest"


class TokenError(AlertsError):
    """A link that cannot be honoured; `reason` says why in the reader's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenExpired(TokenError):
    pass


class TokenInvalid(TokenError):
    pass


class _ClockSigner(TimestampSigner):
    """Signs and checks ages with the service clock, so tests can age a link by moving now()."""

    def get_timestamp(self) -> int:
        return int(now().timestamp())


@lru_cache(maxsize=32)
def _serializer(secret_key: str, purpose: Purpose) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret_key, salt=f"news-alerts.{purpose.value}", signer=_ClockSigner
    )


def make(secret_key: str, purpose: Purpose, payload: dict[str, Any]) -> str:
    return _serializer(secret_key, purpose).dumps(payload)


def read(secret_key: str, purpose: Purpose, token: str, max_age: int) -> dict[str, Any]:
    """The payload, with "_issued_at" (aware UTC) added: when the link was made.

    Raises:
        TokenExpired: older than `max_age` seconds.
        TokenInvalid: not signed by us for this purpose, or not a payload we made.
    """
    try:
        payload, issued = _serializer(secret_key, purpose).loads(
            token, max_age=max_age, return_timestamp=True
        )
    except SignatureExpired as error:
        raise TokenExpired("This link has expired.") from error
    except BadSignature as error:
        raise TokenInvalid("This link is not valid.") from error
    if not isinstance(payload, dict):
        raise TokenInvalid("This link is not valid.")
    payload["_issued_at"] = issued
    return payload


def for_reader(
    secret_key: str, purpose: Purpose, subscriber_id: int, link_key: str, **extra: Any
) -> str:
    """A reader's link (unsubscribe, manage, a digest's list): their id and link key."""
    return make(secret_key, purpose, {"s": subscriber_id, "k": link_key, **extra})
