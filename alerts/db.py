"""Database engine and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL in production."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from sqlalchemy import ARRAY, ColumnElement, Engine, any_, create_engine, event, literal
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever scheme the URL was written with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A server that stops answering fails a connection in 10 s (psycopg waits forever by
        # default): a probe gets its 503, a worker its error, instead of hanging.
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if parsed.database and parsed.database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["alerts.engine"] = engine
    app.extensions["alerts.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


# The app's session and engine, for views, tasks and commands: Flask is imported when they
# are called, never when a domain module imports this one (the domain takes a session).


def session() -> Session:
    """The session of the current app context (request or task), opened on first use."""
    from flask import current_app, g

    if "db_session" not in g:
        g.db_session = current_app.extensions["alerts.sessionmaker"]()
    db_session: Session = g.db_session
    return db_session


def engine() -> Engine:
    from flask import current_app

    db_engine: Engine = current_app.extensions["alerts.engine"]
    return db_engine


@contextmanager
def sending_session() -> Iterator[Session]:
    """A session for a send task: one connection held for all its transactions. The send
    loop commits once per email, and a session on the pool hands its connection back after
    each commit and takes one again, with a ping on PostgreSQL, for the next statement: that
    cost more than the email's own statements. Each commit is still a commit of its own.

    A server connection can die (a restart, a failover): the send steps run through
    `outlasting_lost_connections`, which goes on over a new one.
    """
    from flask import current_app

    with engine().connect() as connection:
        held = current_app.extensions["alerts.sessionmaker"](bind=connection)
        try:
            yield held
        finally:
            held.close()


def outlasting_lost_connections(
    session: Session,
    step: Callable[[], T],
    patience: float,
    rolled_back: Callable[[], None] | None = None,
) -> T:
    """`step()` (statements, and the commit it ends with), run again from the start when the
    database connection was lost or the server would not answer (`OperationalError`: a
    restart, a failover, a terminated backend, a lock held past the busy timeout): rolled
    back, then over a new connection, for up to `patience` seconds.

    A step must hold its effects in its transaction only: run again, it does everything
    once. The outcome of a message the relay has taken is such a step, guarded by its claim
    token: if the first commit did land, the second matches nothing. Given up on, the email
    would be sent again once its lease ran out. `rolled_back()` is called after each
    rollback (the session's objects are expired).
    """
    deadline = time.monotonic() + patience
    pause = 0.05
    while True:
        try:
            return step()
        except DBAPIError as error:
            lost = isinstance(error, OperationalError) or error.connection_invalidated
            if not lost or time.monotonic() + pause > deadline:
                raise
            log.warning("database connection lost (%s); trying again", error.orig)
            session.rollback()
            if rolled_back is not None:
                rolled_back()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`, for a batch's ids. On PostgreSQL `column = ANY(array)`: one
    parameter, not one per value. The driver prepares a statement it runs often, and
    PostgreSQL then plans it once for any values: with one parameter per value it cannot see
    them, and it builds the array again for every row it looks at. With one array it looks
    the ids up in the index, whatever it knows of the table (a table just filled has no
    statistics yet)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(values, ARRAY(column.type)))
    return column.in_(values)


def _close_session(_exc: BaseException | None) -> None:
    from flask import g

    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


def insert_ignoring_duplicates(session: Session | str, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL (for a session, or a
    dialect's name): the unique constraints of the ledger tables decide who did something
    first."""
    name = session if isinstance(session, str) else session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


class _Compiled(NamedTuple):
    sql: str
    positions: tuple[str, ...] | None  # the parameters' order, for a positional driver
    defaults: dict[str, Any]  # values the statement was built with, and columns' defaults
    processors: dict[str, Any]  # name -> the type's conversion for the driver
    makers: dict[str, Any]  # name -> a column's default function, called for each row


class Prepared:
    """A statement run once or more per email sent: compiled once per dialect and run on the
    driver's own cursor, in the session's transaction.

    SQLAlchemy's execution costs more than SQLite's work for a one-row UPDATE; here the
    parameters only go through their types' bind processors (aware datetimes to stored UTC,
    enums to their values), exactly as SQLAlchemy would convert them.
    """

    def __init__(self, statement: Any, columns: tuple[str, ...] | None = None) -> None:
        """`statement`: a Core statement, or a function of the dialect's name giving one;
        `columns`: for an INSERT, the columns each row gives (the others take their defaults,
        as SQLAlchemy would give them: a value, or a function called for each row)."""
        self.statement = statement
        self.columns = columns
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Any) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            statement = self.statement(dialect.name) if callable(self.statement) else self.statement
            compiled = statement.compile(
                dialect=dialect, column_keys=list(self.columns) if self.columns else None
            )
            processors = {}
            for bind, name in compiled.bind_names.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
            positions = tuple(compiled.positiontup) if compiled.positional else None
            defaults, makers = dict(compiled.params), {}
            given: tuple[str, ...] = self.columns or ()
            table: Any = getattr(statement, "table", None)
            for name in list(defaults) if given and table is not None else []:
                default = table.c[name].default if name in table.c else None
                if name in given or default is None:
                    continue
                if default.is_callable:
                    makers[name] = default.arg  # SQLAlchemy's: takes the execution context
                elif default.is_scalar:
                    defaults[name] = default.arg
            found = _Compiled(compiled.string, positions, defaults, processors, makers)
            self._compiled[dialect.name] = found
        return found

    def _parameters(self, prepared: _Compiled, values: dict[str, Any]) -> Any:
        merged = {**prepared.defaults, **values}
        for name, make in prepared.makers.items():
            if name not in values:
                merged[name] = make(None)
        for name, processor in prepared.processors.items():
            merged[name] = processor(merged[name])
        positions = prepared.positions
        return [merged[name] for name in positions] if positions is not None else merged

    def run(self, session: Session | Cursor, values: dict[str, Any]) -> int:
        """Run once (in the session's transaction, or on a cursor() of it); returns the rows
        it matched."""
        with _cursor(session) as (cursor, dialect):
            prepared = self._for(dialect)
            cursor.execute(prepared.sql, self._parameters(prepared, values))
            return int(cursor.rowcount)

    def run_many(
        self,
        session: Session | Cursor,
        rows: list[tuple[Any, ...]],
        columns: tuple[str, ...],
        shared: dict[str, Any],
    ) -> None:
        """Run once per row: `rows` hold the values of `columns`, which differ from row to
        row; `shared` the values every row has, converted for the driver once, not per row."""
        with _cursor(session) as (cursor, dialect):
            prepared = self._for(dialect)
            positions, processors = prepared.positions, prepared.processors
            makers = {
                name: (make, processors.get(name))
                for name, make in prepared.makers.items()
                if name not in columns and name not in shared
            }
            common = {**prepared.defaults, **shared}
            for name, processor in processors.items():
                if name not in columns and name not in makers:
                    common[name] = processor(common[name])
            varying = [(name, processors.get(name)) for name in columns]

            def one(row: tuple[Any, ...]) -> Any:
                values = common.copy()
                for name, (make, processor) in makers.items():
                    values[name] = processor(make(None)) if processor is not None else make(None)
                for (name, processor), value in zip(varying, row, strict=True):
                    values[name] = processor(value) if processor is not None else value
                return [values[name] for name in positions] if positions is not None else values

            cursor.executemany(prepared.sql, [one(row) for row in rows])

    def run_alone(self, session: Session, values: dict[str, Any]) -> int:
        """Run as a transaction of its own when the session has none open (`alone`), else in
        the open one; returns the rows it matched."""
        with alone(session) as opened:
            return self.run(opened, values)

    def rows(self, session: Session | Cursor, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a SELECT; values as the driver returns them (no result processing)."""
        with _cursor(session) as (cursor, dialect):
            prepared = self._for(dialect)
            cursor.execute(prepared.sql, self._parameters(prepared, values))
            return [tuple(row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Cursor:
    """The driver's cursor in a session's transaction, for several Prepared statements in a
    row (asking the session for its connection costs as much as a one-row UPDATE)."""

    raw: Any
    dialect: Any
    connection: Any  # the driver's connection


@contextmanager
def cursor(session: Session) -> Iterator[Cursor]:
    """The driver's errors come out as SQLAlchemy's would (an `OperationalError`...), and a
    connection they show is dead is invalidated: the session replaces it after a rollback."""
    connection = session.connection()
    dialect = connection.dialect
    raw_connection = connection.connection.dbapi_connection
    raw = None
    try:
        raw = raw_connection.cursor()  # type: ignore[union-attr]
        yield Cursor(raw, dialect, raw_connection)
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, raw_connection, raw)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(
            None, None, error, dialect.loaded_dbapi.Error, True, lost, dialect
        ) from error
    finally:
        try:
            if raw is not None:
                raw.close()
        except dialect.loaded_dbapi.Error:
            pass  # a connection already gone


@contextmanager
def alone(session: Session) -> Iterator[Cursor]:
    """A cursor for one statement that is a transaction of its own when the session has none
    open, else part of the open one. On PostgreSQL the server commits it as it runs: one
    round trip, where BEGIN, the statement and COMMIT take three (and, for a one-row UPDATE,
    most of the server's time). The session's commit after it has nothing left to send. On
    SQLite the statement runs in the session's transaction, committed by the caller."""
    with cursor(session) as opened:
        connection = opened.connection
        if opened.dialect.name != "postgresql" or connection.info.transaction_status != 0:
            yield opened
            return
        connection.autocommit = True
        try:
            yield opened
        finally:
            if connection.info.transaction_status == 0:  # else lost: it is replaced
                connection.autocommit = False


@contextmanager
def _cursor(source: Session | Cursor) -> Iterator[tuple[Any, Any]]:
    if isinstance(source, Cursor):
        yield source.raw, source.dialect
        return
    with cursor(source) as opened:
        yield opened.raw, opened.dialect


def rowcount(result: Any) -> int:
    """Rows an UPDATE matched (a CursorResult; typed as a plain Result by SQLAlchemy)."""
    return int(result.rowcount)


# --- queueing tasks after commit ---------------------------------------------------------
# warehouse's addAfterCommitHook: a task is put on the broker only once the rows it reads
# are committed, and never for a transaction that rolled back. No caller orders commit and
# .delay() by hand.

_AFTER_COMMIT = "alerts.after_commit"


def queue_after_commit(
    session: Session, task: Any, *args: Any, countdown: float | None = None
) -> None:
    """Queue the Celery `task` with `args` when this session's transaction commits.

    A broker that cannot be reached is logged, never raised: the commit has happened, and the
    request or task that committed carries on. Fan-outs, alerts and digest runs are then
    queued by the reconciler when the broker is back; a confirmation email or a feed poll
    is not (the reader signs up again, beat polls the feed at its next turn).
    """
    session.info.setdefault(_AFTER_COMMIT, []).append((task, args, countdown))


def call_after_commit(session: Session, call: Any) -> None:
    """Call `call()` once this session's transaction commits (never if it rolls back): a
    metric counts what happened, not what was attempted."""
    session.info.setdefault(_AFTER_COMMIT_CALLS, []).append(call)


_AFTER_COMMIT_CALLS = "alerts.after_commit_calls"


@event.listens_for(Session, "after_commit")
def _queue_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    for call in session.info.pop(_AFTER_COMMIT_CALLS, []):
        call()
    for task, args, countdown in session.info.pop(_AFTER_COMMIT, []):
        try:
            task.apply_async(args, countdown=countdown)
        except Exception as error:
            log.warning("could not queue %s%r (the reconciler will): %s", task.name, args, error)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: Any) -> None:
    if not session.in_transaction():
        session.info.pop(_AFTER_COMMIT, None)
        session.info.pop(_AFTER_COMMIT_CALLS, None)
