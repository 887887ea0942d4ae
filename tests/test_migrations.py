"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from alerts import db
from alerts.models import Base


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection:sqlalchemy.exc.SAWarning")
def test_migrations_match_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_email_is_unique_case_insensitively_in_the_schema(database_url: str) -> None:
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        insert = text(
            "INSERT INTO subscribers (email, status, timezone, created_at, updated_at)"
            " VALUES (:email, 'pending', 'UTC', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        connection.execute(insert, {"email": "Case@example.org"})
        with pytest.raises(Exception, match=r"(?i)unique"):
            connection.execute(insert, {"email": "case@EXAMPLE.org"})
        connection.rollback()
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: object) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_postgres_urls_use_psycopg_3() -> None:
    assert db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
