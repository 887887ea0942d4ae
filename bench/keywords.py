"""Issue: keyword matching time per article with 100,000 readers holding 5 keywords each."""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from alerts import articles, db, matching, migrations, taxonomy
from alerts.clock import now
from alerts.models import (
    Article,
    Frequency,
    Keyword,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Topic,
)

KEYWORDS_EACH = 5
VOCABULARY = 20_000
ARTICLES = 20
CHUNK = 10_000


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def run(args: argparse.Namespace) -> None:
    readers = args.readers
    rng = random.Random(7)
    vocab = vocabulary(rng)
    print(
        f"keywords: {readers:,} readers x {KEYWORDS_EACH} keywords, vocabulary {VOCABULARY:,} words"
    )
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as directory:
        url = args.database_url or f"sqlite:///{directory}/keywords.db"
        migrations.upgrade(url)
        engine = db.make_engine(url)
        with Session(engine) as session:
            taxonomy.seed(session)
            session.commit()
            start = time.perf_counter()
            for offset in range(0, readers, CHUNK):
                ids = range(offset + 1, min(offset + CHUNK, readers) + 1)
                session.execute(
                    insert(Subscriber),
                    [
                        {
                            "id": i,
                            "email": f"r{i}@example.org",
                            "status": SubscriberStatus.ACTIVE,
                            "timezone": "UTC",
                            "confirmed_at": now(),
                        }
                        for i in ids
                    ],
                )
                session.execute(
                    insert(SubscriberLanguage),
                    [{"subscriber_id": i, "language_code": "en"} for i in ids],
                )
                rows = []
                for i in ids:
                    chosen: set[str] = set()
                    while len(chosen) < KEYWORDS_EACH:
                        # One keyword in five is a two-word phrase.
                        size = 2 if rng.random() < 0.2 else 1
                        chosen.add(" ".join(rng.choice(vocab) for _ in range(size)))
                    for phrase in chosen:
                        rows.append(
                            {
                                "subscriber_id": i,
                                "phrase": phrase,
                                "words": phrase,
                                "first_word": phrase.split()[0],
                                "frequency": Frequency.IMMEDIATE,
                            }
                        )
                session.execute(insert(Keyword), rows)
                print(
                    f"\r  readers: {min(offset + CHUNK, readers):,}/{readers:,}", end="", flush=True
                )
            session.commit()
            print(f"  ({time.perf_counter() - start:.0f} s)")

            nobody = session.scalar(select(Topic.slug).where(Topic.slug == "people-news"))
            timings, matched = [], []
            for number in range(ARTICLES):
                text = " ".join(rng.choice(vocab) for _ in range(150))
                result = articles.publish(
                    session,
                    articles.parse(
                        session,
                        {
                            "url": f"https://news.example.org/{number}",
                            "title": f"Story {number}",
                            "summary": f"<p>{text}</p>",
                            "topics": [nobody],
                        },
                    ),
                )
                session.commit()
                article = session.get(Article, result.article_id)
                assert article is not None
                started = time.perf_counter()
                scope = matching.scope(session, article)
                found = [
                    r
                    for page in matching.subscriber_pages(
                        session, scope, (Frequency.IMMEDIATE,), 500
                    )
                    for r in page
                ]
                timings.append(time.perf_counter() - started)
                matched.append(len(found))
            engine.dispose()
    median = statistics.median(timings)
    print(
        f"  per article (150 words): median {median * 1000:.0f} ms, "
        f"max {max(timings) * 1000:.0f} ms, "
        f"{statistics.median(matched):,.0f} matching readers; "
        f"{median / max(statistics.median(matched), 1) * 1e6:.0f} us per matched reader"
    )
