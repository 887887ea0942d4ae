"""Issue: digests per second for N daily readers with 10 new articles each."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from alerts import db
from alerts.models import Frequency
from bench.alerts import add_readers, progress, publish
from bench.stack import running

ARTICLES = 10


def api(base_url: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": "Bearer dev-api-token"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def run(args: argparse.Namespace) -> None:
    total = args.subscribers
    print(f"digests: {total:,} daily readers, {ARTICLES} new articles each")
    print(f"  {args.concurrency} worker processes; one unrelated daily reader per ten (skipped)")
    with running(args.database_url, args.concurrency) as stack, stack.app.app_context():
        print("  adding readers...", flush=True)
        add_readers(total, Frequency.DAILY)
        db.session().commit()
        for number in range(ARTICLES):
            publish(stack.base_url, f"WIPO story {number + 1}")
        started = time.perf_counter()
        body = api(stack.base_url, "/api/v1/digests", {"frequency": "daily"})
        run_id = body["id"]
        while True:
            status = api(stack.base_url, f"/api/v1/digests/{run_id}")
            done = int(status["total"]) - int(status["remaining"])  # type: ignore[call-overload]
            progress(done, int(status["total"]), started)  # type: ignore[call-overload]
            if status["done"]:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        print()
    print(
        f"  {status['sent']:,} digests of {ARTICLES} articles in {elapsed:.1f} s: "
        f"{int(status['sent']) / elapsed:,.0f} digests/s"
    )  # type: ignore[call-overload]
