"""Issue: time from publish to the first alert, and alerts per second to N matching readers."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from datetime import timedelta

from sqlalchemy import func, insert, select

from alerts import db
from alerts.clock import now
from alerts.models import (
    Delivery,
    DeliveryStatus,
    DigestSchedule,
    Frequency,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)
from bench.stack import running

CHUNK = 5_000


def add_readers(count: int, frequency: Frequency = Frequency.IMMEDIATE) -> list[int]:
    """`count` active readers of WIPO at `frequency`, in English (and an unrelated reader for
    every ten); returns the ids of the WIPO readers."""
    session = db.session()
    wipo = session.scalar(select(Topic.id).where(Topic.slug == "wipo"))
    patents = session.scalar(select(Topic.id).where(Topic.slug == "patents"))
    start = int(session.scalar(select(func.coalesce(func.max(Subscriber.id), 0))) or 0) + 1
    total = count + count // 10
    confirmed = now() - timedelta(days=1)
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
        session.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": i,
                    "topic_id": wipo if i - start < count else patents,
                    "frequency": frequency,
                }
                for i in ids
            ],
        )
        if frequency is not Frequency.IMMEDIATE:
            session.execute(
                insert(DigestSchedule),
                [{"subscriber_id": i, "frequency": frequency, "next_at": confirmed} for i in ids],
            )
    session.commit()
    return list(range(start, start + count))


def publish(base_url: str, title: str) -> None:
    """One article through the HTTP API, as a publisher sends it."""
    article = {
        "url": f"https://news.example.org/{time.time_ns()}",
        "title": title,
        "summary": "<p>WIPO member states met in Geneva this week on the broadcasting treaty.</p>",
        "author": "Bench Reporter",
        "language": "en",
        "topics": ["WIPO"],
    }
    request = urllib.request.Request(
        f"{base_url}/api/v1/articles",
        data=json.dumps(article).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer dev-api-token"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status


def sent_count() -> int:
    session = db.session()
    count = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.SENT)
    )
    session.rollback()
    return int(count or 0)


def progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(
        f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} sent, {rate:,.0f}/s",
        end="",
        flush=True,
    )


def run(args: argparse.Namespace) -> None:
    total = args.subscribers
    print(f"alerts: {total:,} matching immediate readers, {args.concurrency} worker processes")
    with running(args.database_url, args.concurrency) as stack, stack.app.app_context():
        print("  adding readers...", flush=True)
        add_readers(total)
        print(f"  database: {stack.app.config['DATABASE_URL'].split(':')[0]}")

        # Latency: one reader, one article, until the sink has accepted the alert.
        latencies = []
        for attempt in range(3):
            before = sent_count()
            started = time.perf_counter()
            publish(stack.base_url, f"Latency probe {attempt}")
            while sent_count() == before:
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
            while sent_count() < before + total:
                time.sleep(0.05)
        # The probes above also sent to every reader; the throughput run is the last of them,
        # measured again from scratch below for a clean figure.
        before = sent_count()
        started = time.perf_counter()
        publish(stack.base_url, "Throughput run")
        first_at = None
        while (done := sent_count() - before) < total:
            if done and first_at is None:
                first_at = time.perf_counter() - started
            progress(done, total, started)
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        progress(total, total, started)
        print()
    print(
        f"  publish -> first alert accepted by SMTP: {min(latencies) * 1000:.0f} ms best, "
        f"{sorted(latencies)[1] * 1000:.0f} ms median of 3 (article to {total:,} readers)"
    )
    print(f"  {total:,} alerts in {elapsed:.1f} s: {total / elapsed:,.0f} alerts/s")
