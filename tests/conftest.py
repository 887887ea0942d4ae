"""Fixtures: a migrated, seeded database per test (SQLite, or PostgreSQL when
ALERTS_TEST_DATABASE_URL is set), an app, its client, an SMTP sink on a socket, the clock."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from alerts import clock, create_app, db, migrations, taxonomy
from alerts.devstack import free_port
from alerts.mail.sink import MailSink
from alerts.models import Base

from support import CLOCK, ServiceClock

POSTGRES_URL = os.environ.get("ALERTS_TEST_DATABASE_URL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
        if "/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


def _seed(url: str) -> None:
    engine = db.make_engine(url)
    with Session(engine) as session:
        taxonomy.seed(session)
        session.commit()
    engine.dispose()


@pytest.fixture(scope="session")
def _database_template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    """Migrate (and seed) once per test process; each test then gets a copy or a clean slate."""
    if POSTGRES_URL:
        admin_url = db.normalize_url(POSTGRES_URL)
        name = f"alerts_test_{worker_id}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        migrations.upgrade(url)
        yield url
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "alerts.db"
        url = f"sqlite:///{path}"
        migrations.upgrade(url)
        _seed(url)
        yield str(path)


@pytest.fixture
def database_url(_database_template: str, tmp_path: Any) -> str:
    if POSTGRES_URL:
        engine = create_engine(_database_template)
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        _seed(_database_template)
        return _database_template
    path = tmp_path / "alerts.db"
    shutil.copyfile(_database_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = db.make_engine(database_url)
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session
    engine.dispose()


@pytest.fixture
def sink(tmp_path: Any) -> Iterator[MailSink]:
    mail_sink = MailSink(str(tmp_path / "mail"), port=free_port())
    with mail_sink:
        yield mail_sink


@pytest.fixture
def app(database_url: str, sink: MailSink, tmp_path: Any) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "SMTP_URL": f"smtp://127.0.0.1:{sink.controller.port}",
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "CELERY_ALWAYS_EAGER": True,
            "DEV_MAIL_DIR": sink.store.directory,
            "BASE_URL": "http://alerts.test",
            "SECRET_KEY": "test-secret",
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    yield app
    app.extensions["alerts.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture(autouse=True)
def service_clock() -> Iterator[ServiceClock]:
    """Every test: the real, running clock until the test freezes it; let run again after."""
    clock.freeze(None)
    yield CLOCK
    clock.freeze(None)


@pytest.fixture
def frozen_clock(service_clock: ServiceClock) -> ServiceClock:
    """The clock frozen at a fixed Monday morning; the test moves it with freeze or advance."""
    service_clock.freeze(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    return service_clock
