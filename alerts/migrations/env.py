"""Alembic environment: migrates the database named by the config's sqlalchemy.url."""

from __future__ import annotations

import warnings

from alembic import context

from alerts.db import make_engine
from alerts.models import Base

config = context.config
# SQLite batch operations reflect related tables; SQLite cannot reflect the lower(email)
# expression index, and says so. The index is not touched by those operations.
warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based")
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
