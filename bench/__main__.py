"""`make bench`: the figures the issues name, measured on this machine over real processes,
each beside its goal; rates beside the wire limit measured in the same run.

python -m bench [NAME ...] [--subscribers 100000] [--concurrency 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import sys

from alerts import config
from bench import alerts, digests, fanout, keywords, report, signup

BENCHMARKS = {
    "alerts": alerts.run,
    "digests": digests.run,
    "fanout": fanout.run,
    "signup": signup.run,
    "keywords": keywords.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--subscribers", type=int, default=100_000, help="alerts, digests")
    parser.add_argument("--runs", type=int, default=3, help="alerts: articles, one at a time")
    parser.add_argument(
        "--wire-messages", type=int, default=30_000, help="messages sent to measure the wire"
    )
    parser.add_argument("--readers", type=int, default=100_000, help="keywords benchmark")
    parser.add_argument(
        "--fanout-readers",
        type=int,
        nargs=2,
        default=(100_000, 1_000_000),
        metavar=("SMALL", "LARGE"),
        help="fanout: all readers, of whom --fanout-matching match",
    )
    parser.add_argument(
        "--fanout-matching", type=int, default=10_000, help="fanout: readers the article reaches"
    )
    parser.add_argument(
        "--memory-digests", type=int, default=100_000, help="fanout: digests sent while sampled"
    )
    parser.add_argument("--signups", type=int, default=6_000, help="signup: POST /subscribe")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=config.SEND_PROCESSES,
        help="Celery worker processes (and send tasks per article or digest run)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (a fresh database is made in it); default: a fresh SQLite file",
    )
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark: {', '.join(sorted(unknown))}")
    for name in args.names or list(BENCHMARKS):
        BENCHMARKS[name](args)
    print()
    print(report.table())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
