"""Signup limits hold on the real Redis storage, shared by every web worker."""

from __future__ import annotations

import pytest

from processes import Browser, Stack
from support import csrf_from


@pytest.mark.settings(ALERTS_RATELIMIT_SUBSCRIBE_IP="2 per minute")
def test_signup_limit_counts_in_redis(stack: Stack) -> None:
    import redis

    statuses = []
    for number in range(3):
        browser = Browser(stack.base_url)  # a new browser each time: no shared cookies
        _, form = browser.request("/")
        status, _ = browser.request(
            "/subscribe",
            {
                "csrf_token": csrf_from(form),
                "email": f"flood{number}@example.org",
                "topics": ["wipo"],
                "languages": ["en"],
                "frequency": "daily",
            },
        )
        statuses.append(status)
    assert statuses == [200, 200, 429]
    client = redis.Redis.from_url(stack.redis_url)
    keys = client.keys("*")
    client.close()
    assert any(b"LIMIT" in key.upper() for key in keys), keys
