"""`make bench` at a small size: every benchmark runs on its real stack, its sink counts
exactly the expected mail (the run fails otherwise), and every figure reaches the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmarks_run_and_check_what_they_sent() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALERTS_")}
    argv = [sys.executable, "-m", "bench", "alerts", "digests", "fanout", "signup"]
    argv += ["--subscribers", "300", "--runs", "2", "--wire-messages", "300"]
    argv += ["--fanout-readers", "600", "1200", "--fanout-matching", "200"]
    argv += ["--memory-digests", "200", "--signups", "120"]
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "300 readers got exactly 2 alerts each, nobody else" in out
    assert "300 readers got exactly 1 digest each, nobody else" in out
    assert "120 readers got exactly 1 confirmation each, nobody else" in out
    table = out.split("figure", 1)[1]
    for figure in (
        "alerts, 300 readers",
        "publish -> first alert, 300 readers",
        "digests, 300 readers x 10 articles",
        "fan-out to 200 of 1,200 vs of 600 readers",
        "peak RSS, digest run to",
        "signup, POST /subscribe",
    ):
        assert figure in table, figure
    assert "x the wire" in table
