"""Signed links: one salt per purpose, expiry on the service clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import pytest

from alerts import tokens


def test_round_trip() -> None:
    token = tokens.make("k", tokens.Purpose.CONFIRM, {"s": 7, "n": "ab"})
    payload = tokens.read("k", tokens.Purpose.CONFIRM, token, 60)
    assert {key: payload[key] for key in ("s", "n")} == {"s": 7, "n": "ab"}
    assert payload["_issued_at"].tzinfo is not None


def test_a_token_for_one_purpose_opens_no_other() -> None:
    token = tokens.make("k", tokens.Purpose.CONFIRM, {"s": 7})
    with pytest.raises(tokens.TokenInvalid):
        tokens.read("k", tokens.Purpose.UNSUBSCRIBE, token, 60)


def test_forged_and_truncated_tokens_are_invalid() -> None:
    token = tokens.make("k", tokens.Purpose.CONFIRM, {"s": 7})
    for bad in (
        token[:-2],
        token + "x",
        tokens.make("other-key", tokens.Purpose.CONFIRM, {"s": 7}),
    ):
        with pytest.raises(tokens.TokenInvalid):
            tokens.read("k", tokens.Purpose.CONFIRM, bad, 60)


def test_expiry_follows_the_service_clock(frozen_clock: Any) -> None:
    token = tokens.make("k", tokens.Purpose.CONFIRM, {"s": 7})
    frozen_clock.advance(timedelta(seconds=59))
    assert tokens.read("k", tokens.Purpose.CONFIRM, token, 60)["s"] == 7
    frozen_clock.advance(timedelta(seconds=2))
    with pytest.raises(tokens.TokenExpired):
        tokens.read("k", tokens.Purpose.CONFIRM, token, 60)


@pytest.mark.parametrize(
    "payload",
    [
        {"s": 7, "k": "Zx9-_aB3kLm0pQ"},
        {"s": 123456789, "k": "q7Hn-2xWc_Lr0ZbT", "n": "nonce", "f": "daily"},
        {"s": 1, "n": "café — 编辑 «»"},  # not ASCII: written as UTF-8, as itsdangerous does
        {"s": 2, "topics": ["patents"] * 40},  # long enough to be compressed ("." prefix)
        {},
    ],
)
def test_links_are_the_tokens_itsdangerous_makes(
    payload: dict[str, Any], frozen_clock: Any
) -> None:
    """The fast signer is an optimisation only: byte for byte the same token, so links sent
    before and after it open the same way (a reader's link is never worth compressing)."""
    for purpose in tokens.Purpose:
        made = tokens.make("a secret", purpose, payload)
        assert made == tokens._serializer("a secret", purpose).dumps(payload)
        assert tokens.read("a secret", purpose, made, 60) == {**payload, "_issued_at": ANY}
    assert tokens.make("a secret", tokens.Purpose.CONFIRM, payload) != tokens.make(
        "another secret", tokens.Purpose.CONFIRM, payload
    )


def test_short_payloads_are_never_compressed_and_still_read(frozen_clock: Any) -> None:
    """Below the size zlib could shorten, a compressible payload goes as it is: a token in
    the same format, which reads back (itsdangerous would have compressed this one)."""
    payload = {"r": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
    made = tokens.make("a secret", tokens.Purpose.DIGEST, payload)
    assert not made.startswith(".")
    assert tokens._serializer("a secret", tokens.Purpose.DIGEST).dumps(payload).startswith(".")
    assert tokens.read("a secret", tokens.Purpose.DIGEST, made, 60)["r"] == payload["r"]
