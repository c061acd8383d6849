"""The models and the migrations describe the same schema (what ``alembic check`` checks)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

import app.models  # noqa: F401
from app.crypto import Keyring
from app.db import Base
from app.models import Contact
from app.models import include_in_schema_comparison
from app.shops import register_shop
from tests.conftest import TEST_SECRET_KEY


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


def test_0012_lowers_the_sqlite_search_text_of_the_contacts_already_there(fresh_database: sa.Engine) -> None:
    # The search table of migration 0010 held the text as written; 0012 refills it lowered (every letter,
    # not only ASCII's) and its triggers keep it so. PostgreSQL has no such table: nothing to do there.
    if fresh_database.dialect.name != "sqlite":
        pytest.skip("SQLite's search table: PostgreSQL's trigram index uses the database's own lower()")
    from alembic import command

    from app.cli import alembic_config

    config = alembic_config(fresh_database.url.render_as_string(hide_password=False))

    def migrate(to: str) -> None:
        with fresh_database.begin() as connection:
            config.attributes["connection"] = connection
            (command.downgrade if to == "0011" else command.upgrade)(config, to)

    def search_texts() -> set[str]:
        with fresh_database.connect() as connection:
            return set(connection.exec_driver_sql("SELECT search FROM contacts_search").scalars())

    migrate("0011")
    with Session(fresh_database) as session, session.begin():  # the tables are the same at 0011
        shop = register_shop(
            session, Keyring(TEST_SECRET_KEY), platform="shopify", domain="a.myshopify.com", token="shpat_x"
        )
        session.add(
            Contact(
                shop_id=shop.id, email="emile@example.fr", first_name="ÉMILE", last_name="Łukasz",
                source="import", tags=[], pending_fields=[], pending_tags=[],
            )
        )  # fmt: skip
    assert search_texts() == {"ÉMILE Łukasz emile@example.fr "}
    migrate("head")
    assert search_texts() == {"émile łukasz emile@example.fr "}
    with fresh_database.begin() as connection:
        connection.exec_driver_sql("UPDATE contacts SET last_name = 'ÖRN' WHERE id = 1")
    assert search_texts() == {"émile örn emile@example.fr "}


@pytest.mark.postgresql  # GIN's pending list is PostgreSQL's
def test_0013_keeps_the_search_indexs_pending_list_small(fresh_database: sa.Engine) -> None:
    from alembic import command

    from app.cli import alembic_config

    def options() -> list[str]:
        with fresh_database.connect() as connection:
            return list(
                connection.scalar(
                    sa.text(
                        "SELECT coalesce(reloptions, '{}') FROM pg_class"
                        " WHERE relname = 'ix_contacts_search_trgm'"
                    )
                )
            )

    assert options() == ["gin_pending_list_limit=256"]
    config = alembic_config(fresh_database.url.render_as_string(hide_password=False))
    with fresh_database.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012")
    assert options() == []
    with fresh_database.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert options() == ["gin_pending_list_limit=256"]
