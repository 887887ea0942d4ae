"""A batch's lease on its rows, renewed by a heartbeat thread for as long as the task lives.

Renewing from the send loop would let a relay that is slow to answer (a long DATA reply)
outlast the lease while the message is still on its way, and a second worker would send it
again. The heartbeat keeps the lease alive exactly as long as the process holding it; when
the process dies, the lease goes stale and the reconciler hands the rows to another task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


class Lease:
    """`with Lease(engine, renew, every, stale_after):` calls renew(session) every `every`
    seconds on its own connection until the block ends."""

    def __init__(
        self,
        engine: Engine,
        renew: Callable[[Session], None],
        every: float,
        stale_after: float,
    ) -> None:
        self.engine = engine
        self.renew = renew
        self.every = every
        self.stale_after = stale_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._renewed = time.monotonic()

    @property
    def lost(self) -> bool:
        """True once renewals have failed for half the stale limit: stop sending, another
        worker may take the rows over soon."""
        return time.monotonic() - self._renewed > self.stale_after / 2

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with Session(self.engine) as session:
                    self.renew(session)
                    session.commit()
                self._renewed = time.monotonic()
            except SQLAlchemyError as error:
                log.warning("could not renew a send lease: %s", error)

    def __enter__(self) -> Lease:
        self._renewed = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
