"""What the benchmarks share: readers added in bulk, articles published over HTTP, a
progress bar, and the check that the sink got exactly the expected mail."""

from __future__ import annotations

import collections
import json
import sys
import time
import urllib.request
from datetime import timedelta

from sqlalchemy import func, insert, select

from alerts import config, db
from alerts.clock import now
from alerts.models import (
    DigestSchedule,
    Frequency,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)

CHUNK = 5_000
API_TOKEN = config.DEV_API_TOKEN


def add_readers(
    count: int,
    frequency: Frequency = Frequency.IMMEDIATE,
    others: int | None = None,
    others_frequency: Frequency | None = None,
) -> list[str]:
    """`count` active readers of WIPO at `frequency`, in English, and `others` readers of
    Patents (default: one for every ten) at `others_frequency` (default: the same), spread
    among them; returns the WIPO readers' addresses."""
    session = db.session()
    wipo = session.scalar(select(Topic.id).where(Topic.slug == "wipo"))
    patents = session.scalar(select(Topic.id).where(Topic.slug == "patents"))
    start = int(session.scalar(select(func.coalesce(func.max(Subscriber.id), 0))) or 0) + 1
    others = count // 10 if others is None else others
    others_frequency = others_frequency or frequency
    total = count + others
    # Every `step`-th reader follows WIPO: the matching readers are spread over all ids.
    step = total / count if count else 0.0
    chosen = {start + int(k * step) for k in range(count)}
    confirmed = now() - timedelta(days=1)
    started = time.perf_counter()
    for offset in range(0, total, CHUNK):
        ids = range(start + offset, start + min(offset + CHUNK, total))
        session.execute(
            insert(Subscriber),
            [
                {
                    "id": i,
                    "email": f"reader{i}@example.org",
                    "status": SubscriberStatus.ACTIVE,
                    "timezone": "UTC",
                }
                for i in ids
            ],
        )
        session.execute(
            insert(SubscriberLanguage), [{"subscriber_id": i, "language_code": "en"} for i in ids]
        )
        wanted = {i: frequency if i in chosen else others_frequency for i in ids}
        session.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": i,
                    "topic_id": wipo if i in chosen else patents,
                    "frequency": wanted[i],
                }
                for i in ids
            ],
        )
        schedules = [
            {"subscriber_id": i, "frequency": wanted[i], "next_at": confirmed}
            for i in ids
            if wanted[i] is not Frequency.IMMEDIATE
        ]
        if schedules:
            session.execute(insert(DigestSchedule), schedules)
        session.commit()
        bar(offset + len(ids), total, started, "readers added")
    print(file=sys.stderr)
    return [f"reader{i}@example.org" for i in sorted(chosen)]


def api(base_url: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def publish(base_url: str, title: str, topic: str = "WIPO") -> int:
    """One article through the HTTP API, as a publisher sends it; returns its id."""
    body = api(
        base_url,
        "/api/v1/articles",
        {
            "url": f"https://news.example.org/{time.time_ns()}",
            "title": title,
            "summary": "<p>WIPO member states met in Geneva this week on the broadcasting "
            "treaty.</p>",
            "author": "Bench Reporter",
            "language": "en",
            "topics": [topic],
        },
    )
    return int(body["id"])  # type: ignore[call-overload]


def bar(done: int, total: int, started: float, what: str = "sent") -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(
        f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} {what}, {rate:,.0f}/s",
        end="",
        file=sys.stderr,
        flush=True,
    )


def check_received(
    counts: collections.Counter[str], expected: list[str], each: int, what: str
) -> str:
    """Exactly the expected recipients, each `each` times: anything else is a failed run."""
    missing = [address for address in expected if counts.get(address, 0) < each]
    doubled = [address for address in expected if counts.get(address, 0) > each]
    strangers = set(counts) - set(expected)
    if missing or doubled or strangers:
        raise SystemExit(
            f"{what}: {len(missing):,} readers short, {len(doubled):,} got too many, "
            f"{len(strangers):,} unexpected recipients"
        )
    return f"sink check: {len(expected):,} readers got exactly {each} {what} each, nobody else"
