"""Signed links: one salt per purpose, expiry on the service clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
