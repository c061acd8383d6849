"""Shared fixtures: a migrated database (SQLite by default, PostgreSQL when TEST_DATABASE_URL is set), each
test inside a transaction rolled back at the end, and an app bound to it.

Tests that must commit for real (concurrency, crash recovery) ask for ``fresh_database`` instead: a new,
migrated database of their own, dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.contacts.service import ContactService
from app.db import Database
from app.db import create_db_engine
from app.db import get_database
from app.models import Shop
from app.shops import create_api_key
from app.shops import register_shop

TEST_SECRET_KEY = "test-secret-key-0123456789abcdef"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "").strip()


def pytest_report_header(config: pytest.Config) -> str:
    if POSTGRES_URL:
        return (
            f"popsync database: PostgreSQL ({sa.make_url(POSTGRES_URL).render_as_string(hide_password=True)})"
        )
    return "popsync database: SQLite (set TEST_DATABASE_URL for PostgreSQL)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_URL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: make test runs it again with TEST_DATABASE_URL")
    for item in items:
        if "postgresql" in item.keywords:
            item.add_marker(skip)


def _postgres_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class ScratchDatabases:
    """Creates and drops throwaway databases (PostgreSQL) or files (SQLite)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[str] = []

    def create(self) -> str:
        if not POSTGRES_URL:
            return f"sqlite:///{self.tmp / f'{uuid.uuid4().hex}.sqlite3'}"
        base = sa.make_url(_postgres_url(POSTGRES_URL))
        name = f"popsync_test_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        self.created.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self.created:
            return
        base = sa.make_url(_postgres_url(POSTGRES_URL))
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            for name in self.created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def migrate(engine: sa.Engine) -> None:
    from alembic import command

    from app.cli import alembic_config

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@pytest.fixture(scope="session")
def scratch() -> Iterator[ScratchDatabases]:
    with tempfile.TemporaryDirectory(prefix="popsync-tests-") as tmp:
        databases = ScratchDatabases(Path(tmp))
        yield databases
        databases.drop_all()


@pytest.fixture(scope="session")
def engine(scratch: ScratchDatabases) -> Iterator[sa.Engine]:
    engine = create_db_engine(scratch.create())
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that is rolled back after the test: nothing a test writes survives."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


def app_config(database_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "APP_URL": "http://popsync.test",
        "SUBMISSION_RATE_LIMIT": "0",
        "SHOP_RATE_LIMIT": "0",
        **extra,
    }


@pytest.fixture
def app_extra() -> dict[str, Any]:
    """Settings a test module adds to the app's (override this fixture in the module)."""
    return {}


@pytest.fixture
def app(engine: sa.Engine, connection: sa.Connection, tmp_path: Path, app_extra: dict[str, Any]) -> Flask:
    # Each test's own instance folder: uploads and generated files never land in the repository.
    extra = {"POPSYNC_INSTANCE_PATH": str(tmp_path / "instance"), **app_extra}
    config = app_config(engine.url.render_as_string(hide_password=False), DATABASE_ENGINE=engine, **extra)
    application = create_app(config)
    application.config["TESTING"] = True
    get_database(application).bind_to(connection)
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Database:
    return get_database(app)


@pytest.fixture
def service(app: Flask) -> ContactService:
    return app.extensions["popsync.contacts"]


@pytest.fixture
def fresh_database(scratch: ScratchDatabases) -> Iterator[sa.Engine]:
    """A new migrated database whose commits are real (dropped at the end of the session)."""
    engine = create_db_engine(scratch.create(), pool_size=40, max_overflow=10)
    migrate(engine)
    yield engine
    engine.dispose()


def add_shop(
    app: Flask, domain: str = "demo.myshopify.com", platform: str = "shopify", region: str | None = "US"
) -> Shop:
    with get_database(app).write_transaction() as session:
        return register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform=platform,
            domain=domain,
            token="shpat_test_token",
            region=region,
        )


def add_api_key(app: Flask, shop: Shop) -> str:
    with get_database(app).write_transaction() as session:
        return create_api_key(session, session.get(Shop, shop.id))


@pytest.fixture
def shop(app: Flask) -> Shop:
    return add_shop(app)


@pytest.fixture
def api_key(app: Flask, shop: Shop) -> str:
    return add_api_key(app, shop)


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}
