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
    seconds on its own connection until the block ends; renew returns the rows it still
    holds (0: another task took them over)."""

    def __init__(
        self,
        engine: Engine,
        renew: Callable[[Session], int],
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
        self._lost = False

    @property
    def lost(self) -> bool:
        """True once renewals have failed for half the stale limit (another worker may take
        the rows over soon), or a renewal found the rows taken over: stop sending. For good:
        a task that waited out a database outage must not carry on with rows another task
        took meanwhile, even when its renewals succeed again."""
        if time.monotonic() - self._renewed > self.stale_after / 2:
            self._lost = True
        return self._lost

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            if self.lost:
                return
            try:
                with Session(self.engine) as session:
                    held = self.renew(session)
                    session.commit()
            except SQLAlchemyError as error:
                log.warning("could not renew a send lease: %s", error)
                continue
            if held == 0:
                self._lost = True
                return
            self._renewed = time.monotonic()

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
