"""The models and the migrations describe the same schema (what ``alembic check`` checks)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401
from app.db import Base
from app.models import include_in_schema_comparison


def test_models_and_migrations_agree(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        # The search indexes exist only in migration 0010: compared as alembic check compares them.
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_in_schema_comparison}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrations_are_at_head(engine: sa.Engine) -> None:
    from alembic.script import ScriptDirectory

    from app.cli import alembic_config

    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    assert current == script.get_current_head()


def test_downgrade_to_base_and_back(fresh_database: sa.Engine) -> None:
    from alembic import command

    from app.cli import alembic_config

    config = alembic_config(fresh_database.url.render_as_string(hide_password=False))
    with fresh_database.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(sa.inspect(fresh_database).get_table_names()) <= {"alembic_version"}
    with fresh_database.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert "contacts" in sa.inspect(fresh_database).get_table_names()
