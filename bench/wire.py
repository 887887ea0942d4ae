"""The wire limit: how fast the sink takes the very bytes the service sent, over as many
reused connections as there are worker processes, with nothing but SMTP in the sender.

Every other figure is printed as a ratio of this one, measured in the same run, on the same
machine, into the same kind of sink: absolute rates move from machine to machine, the ratio
says how much of the limit the service reaches.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from alerts.devstack import ChildProcess, free_port, mail_sink_argv, port_open, wait_for
from alerts.mail import message, smtp
from alerts.mail.sink import discarded


def _send_all(port: int, sample: bytes, recipients: Sequence[str], ready: Any) -> None:
    settings = smtp.SmtpSettings("127.0.0.1", port, "none")
    sender = message.envelope_sender("Bench <bench@example.org>")
    with smtp.connect(settings) as mailer:
        mailer.connection.ehlo_or_helo_if_needed()
        ready.wait()
        for recipient in recipients:
            rejection = mailer.send(sample, sender, recipient)
            assert rejection is None, rejection


def limit(sample: bytes, count: int, connections: int) -> float:
    """Messages per second: `count` copies of `sample` (to distinct recipients) into a fresh
    discarding sink over `connections` connections, one process each."""
    recipients = [f"wire{number}@example.org" for number in range(count)]
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="alerts-wire-") as directory:
        port = free_port()
        sink = ChildProcess(
            "sink", mail_sink_argv("127.0.0.1", port, directory, discard=True), None,
            os.path.join(directory, "sink.log"),
        ).start()  # fmt: skip
        try:
            wait_for(lambda: port_open("127.0.0.1", port), 20, "sink")
            ready = context.Barrier(connections + 1)
            senders = [
                context.Process(
                    target=_send_all, args=(port, sample, recipients[i::connections], ready)
                )
                for i in range(connections)
            ]
            for process in senders:
                process.start()
            ready.wait(60)  # every sender connected
            started = time.perf_counter()
            for process in senders:
                process.join()
            elapsed = time.perf_counter() - started
            assert all(process.exitcode == 0 for process in senders), "a wire sender failed"
        finally:
            sink.stop()
        counts, _ = discarded(directory)
    assert sorted(counts) == sorted(recipients) and set(counts.values()) == {1}, "wire: lost mail"
    return count / elapsed
