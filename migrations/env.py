"""Alembic environment: runs on the connection popsync hands in (``popsync db upgrade``, tests), or on the
URL in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config
from sqlalchemy import pool

import app.models  # noqa: F401  (registers every table on the metadata)
from app.db import Base
from app.models import include_in_schema_comparison

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # The search indexes exist only in migration 0010 (app/models.py, SEARCH_INDEX_OBJECTS).
        include_object=include_in_schema_comparison,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section) or {}, poolclass=pool.NullPool)
    with engine.connect() as new_connection:
        run_migrations(new_connection)
        new_connection.commit()
