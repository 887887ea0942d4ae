"""Digests: a run to N daily readers with 10 new articles each, beside the wire limit for
the same bytes; the sink checks each reader got one digest and unrelated readers none."""

from __future__ import annotations

import argparse
import sys
import time

from alerts.models import Frequency
from bench import report, wire
from bench.common import add_readers, api, bar, check_received, publish
from bench.stack import running

ARTICLES = 10


def run(args: argparse.Namespace) -> None:
    total = args.subscribers
    print(
        f"digests: {total:,} daily readers with {ARTICLES} new articles each (and {total // 10:,}"
        f" daily readers with nothing new), {args.concurrency} worker processes"
    )
    with running(args.database_url, args.concurrency) as stack, stack.app.app_context():
        expected = add_readers(total, Frequency.DAILY)
        for number in range(ARTICLES):
            publish(stack.base_url, f"WIPO story {number + 1}")
        started = time.perf_counter()
        body = api(stack.base_url, "/api/v1/digests", {"frequency": "daily"})
        asked = time.perf_counter() - started
        first: float | None = None
        run_id = body["id"]
        while True:
            status = api(stack.base_url, f"/api/v1/digests/{run_id}")
            done = int(status["total"]) - int(status["remaining"])  # type: ignore[call-overload]
            if done and first is None:
                first = time.perf_counter() - started
            bar(done, int(status["total"]), started)  # type: ignore[call-overload]
            if status["done"]:
                break
            # Once a second: each look counts the run's readers by status, in the database
            # the workers write to (five a second cost PostgreSQL a tenth of a core).
            time.sleep(1.0)
        elapsed = time.perf_counter() - started
        print(file=sys.stderr)
        counts, sample = stack.received()
        print(f"  {check_received(counts, expected, 1, 'digest')}")
        print(
            f"  run started in {asked * 1000:,.0f} ms;"
            f" first digests recorded after {first or elapsed:.1f} s of {elapsed:.1f} s"
        )
    sent = int(status["sent"])  # type: ignore[call-overload]
    rate = sent / elapsed
    limit = wire.limit(sample, min(total, args.wire_messages), args.concurrency)
    report.add(
        f"digests, {total:,} readers x {ARTICLES} articles",
        report.ratio(rate, limit) + f" ({len(sample):,} B)",
        "0.8x",
        rate >= 0.8 * limit,
    )
