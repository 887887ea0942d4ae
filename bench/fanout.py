"""Fan-out follows the matched readers, not all readers: an article reaching 10,000 readers
among 100,000, then among 1,000,000. And memory: the peak resident size of every process
while a digest run to the million starts and sends its first 100,000 (psutil)."""

from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy import select

from alerts import db
from alerts.models import Article, Frequency
from bench import report
from bench.alerts import SinkTail
from bench.common import add_readers, api, bar, publish
from bench.stack import BenchStack, running


def _fan_out(stack: BenchStack, matching: int) -> tuple[float, float]:
    """Seconds from publish to the fan-out written, and to the last alert accepted."""
    tail = SinkTail(stack)
    before = tail.poll()
    started = time.perf_counter()
    article_id = publish(stack.base_url, "WIPO story")
    fanned = None
    session = db.session()
    while (done := tail.poll() - before) < matching:
        if fanned is None:
            finished = session.scalar(select(Article.fanned_out_at).where(Article.id == article_id))
            session.rollback()
            if finished is not None:
                fanned = time.perf_counter() - started
        bar(done, matching, started)
        time.sleep(0.02)
    delivered = time.perf_counter() - started
    print(file=sys.stderr)
    if fanned is None:
        fanned = delivered  # written before the last alert left, at the latest
    return fanned, delivered


def run(args: argparse.Namespace) -> None:
    small, large = args.fanout_readers
    matching = args.fanout_matching
    costs = {}
    for total in (small, large):
        print(
            f"fan-out: an article reaching {matching:,} immediate readers among {total:,} "
            "(the others: daily readers of another topic)"
        )
        memory = total == large
        with (
            running(args.database_url, args.concurrency, beat=memory) as stack,
            stack.app.app_context(),
        ):
            add_readers(matching, Frequency.IMMEDIATE, total - matching, Frequency.DAILY)
            costs[total] = _fan_out(stack, matching)
            print(
                f"  fan-out written in {costs[total][0]:.2f} s, "
                f"{matching:,} alerts accepted in {costs[total][1]:.1f} s"
            )
            if memory:
                _digest_run_memory(stack, args.memory_digests)
    (small_fanout, small_all), (large_fanout, large_all) = costs[small], costs[large]
    report.add(
        f"fan-out to {matching:,} of {large:,} vs of {small:,} readers",
        f"{large_fanout / small_fanout:.2f}x ({large_fanout:.2f} s vs {small_fanout:.2f} s); "
        f"to the last alert {large_all / small_all:.2f}x ({large_all:.1f} s vs {small_all:.1f} s)",
        "<= 1.5x",
        large_all / small_all <= 1.5 and large_fanout / small_fanout <= 1.5,
    )


def _digest_run_memory(stack: BenchStack, first: int) -> None:
    """A daily run to every other reader, sampled until its first `first` digests are out."""
    publish(stack.base_url, "Patent story", topic="Patents")
    started = time.perf_counter()
    body = api(stack.base_url, "/api/v1/digests", {"frequency": "daily"})
    started_in = time.perf_counter() - started
    run_id = body["id"]
    while True:
        status = api(stack.base_url, f"/api/v1/digests/{run_id}")
        sent = int(status["sent"])  # type: ignore[call-overload]
        bar(sent, first, started)
        if sent >= first or status["done"]:
            break
        time.sleep(0.5)
    print(file=sys.stderr)
    total = int(status["total"])  # type: ignore[call-overload]
    print(f"  digest run to {total:,} readers started in {started_in:.1f} s")
    worst = max(stack.peaks.peak.values())
    report.add(
        f"peak RSS, digest run to {total:,} readers, first {first:,} sent",
        stack.peaks.summary() + " (largest single process of each)",
        "< 300 MB each",
        worst < 300 * 2**20,
    )
