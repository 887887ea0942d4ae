"""Signed links: one itsdangerous salt per purpose, so a token for one job opens no other."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import zlib
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


class _Maker:
    """itsdangerous's URLSafeTimedSerializer.dumps, spelled out with what does not change
    between calls worked out once, at a fraction of the cost: every alert and digest carries
    two or three signed links, and itsdangerous derives the key and builds a JSON encoder,
    an HMAC and a zlib stream anew for each. The same format, read by read(); a payload too
    short for zlib to shorten (a reader's link) is not offered to it, the rest are, as
    itsdangerous does, so a link is the very token itsdangerous would make (tests compare)."""

    _json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def __init__(self, secret_key: str, purpose: Purpose) -> None:
        signer = _serializer(secret_key, purpose).make_signer()
        self._mac = hmac.new(signer.derive_key(), digestmod=hashlib.sha1)

    def dumps(self, payload: dict[str, Any]) -> str:
        data = self._json.encode(payload).encode()
        body = _b64(data)
        if len(data) > _WORTH_COMPRESSING:
            compressed = zlib.compress(data)
            if len(compressed) < len(data) - 1:
                body = b"." + _b64(compressed)
        stamp = int(now().timestamp())
        value = body + b"." + _b64(stamp.to_bytes(8, "big").lstrip(b"\x00"))
        mac = self._mac.copy()
        mac.update(value)
        return (value + b"." + _b64(mac.digest())).decode()


# zlib adds six bytes of its own and a reader's link payload ({"s": id, "k": key}, about 40
# bytes) has nothing to shorten; compressing it cost more than the rest of the signing.
_WORTH_COMPRESSING = 64


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@lru_cache(maxsize=32)
def _maker(secret_key: str, purpose: Purpose) -> _Maker:
    return _Maker(secret_key, purpose)


def make(secret_key: str, purpose: Purpose, payload: dict[str, Any]) -> str:
    return _maker(secret_key, purpose).dumps(payload)


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
