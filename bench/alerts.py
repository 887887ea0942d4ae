"""Alerts: publish to first alert accepted by the sink, and alerts per second to N matching
readers, beside the wire limit for the same bytes; the sink checks who got what."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from bench import report, wire
from bench.common import add_readers, bar, check_received, publish
from bench.stack import BenchStack, running


class SinkTail:
    """Counts the recipients the sink has accepted so far, by reading its log as it grows."""

    def __init__(self, stack: BenchStack) -> None:
        self.path = os.path.join(stack.mail_dir, "recipients.log")
        self.offset = 0
        self.count = 0

    def poll(self) -> int:
        if os.path.exists(self.path):
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                chunk = log.read()
            whole = chunk.rfind(b"\n") + 1  # a line still being written is counted next time
            self.count += chunk.count(b"\n", 0, whole)
            self.offset += whole
        return self.count


def run(args: argparse.Namespace) -> None:
    total = args.subscribers
    runs = args.runs
    print(
        f"alerts: {total:,} matching immediate readers (and {total // 10:,} others), "
        f"{args.concurrency} worker processes, {runs} articles one after another"
    )
    with running(args.database_url, args.concurrency) as stack, stack.app.app_context():
        expected = add_readers(total)
        print(f"  database: {stack.app.config['DATABASE_URL'].split(':')[0]}")
        tail = SinkTail(stack)
        latencies, rates = [], []
        for attempt in range(runs):
            # The system is idle: the last article's alerts have all been accepted.
            before = tail.poll()
            started = time.perf_counter()
            publish(stack.base_url, f"WIPO story {attempt + 1}")
            while tail.poll() == before:
                time.sleep(0.001)
            latencies.append(time.perf_counter() - started)
            while (done := tail.poll() - before) < total:
                bar(done, total, started)
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
            bar(total, total, started)
            print(file=sys.stderr)
            rates.append(total / elapsed)
        counts, sample = stack.received()
        print(f"  {check_received(counts, expected, runs, 'alerts')}")
    limit = wire.limit(sample, min(total, args.wire_messages), args.concurrency)
    rate = statistics.median(rates)
    p50 = statistics.median(latencies) * 1000
    report.add(
        f"alerts, {total:,} readers",
        report.ratio(rate, limit) + f" ({len(sample):,} B)",
        "0.9x",
        rate >= 0.9 * limit,
    )
    report.add(
        f"publish -> first alert, {total:,} readers",
        f"p50 {p50:.0f} ms of {runs} ({', '.join(f'{s * 1000:.0f}' for s in latencies)})",
        "p50 < 300 ms",
        p50 < 300,
    )
