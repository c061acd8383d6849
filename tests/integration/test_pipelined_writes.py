"""``pipelined`` (app/db.py) on a database whose commits are real, and the sync's writes in it.

The writes inside go to PostgreSQL together, and the transaction stays all or nothing: a write the server
refuses is raised as SQLAlchemy's error (by a later statement inside the block or at its end) and the
transaction rolls back; a Python error inside rolls everything back; a connection lost at the end is an
``OperationalError`` (a 503) and is dropped from the pool. Either way the next transaction gets a working
connection out of pipeline mode. On SQLite the block runs as it is."""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.crypto import Keyring
from app.db import Database
from app.db import pipelined
from app.enums import Source
from app.models import Contact
from app.models import ContactEvent
from app.models import RateLimitCounter
from app.shops import register_shop
from tests.conftest import TEST_SECRET_KEY

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_COUNTERS: sa.Table = RateLimitCounter.__table__  # type: ignore[assignment]
_EVENTS: sa.Table = ContactEvent.__table__  # type: ignore[assignment]


def _count(key: str) -> sa.Insert:
    return sa.insert(_COUNTERS).values(key=key, window_start=NOON, count=1).inline()


def _keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.scalars(sa.select(_COUNTERS.c.key)))


def _in_pipeline(session: Session) -> bool:
    driver = session.connection().connection.driver_connection
    pgconn = getattr(driver, "pgconn", None)  # psycopg's libpq connection; SQLite has none
    return pgconn is not None and bool(pgconn.pipeline_status)


@pytest.fixture
def database(fresh_database: sa.Engine) -> Database:
    return Database(str(fresh_database.url), engine=fresh_database)


def test_the_writes_inside_go_together_and_commit_with_the_transaction(
    database: Database, fresh_database: sa.Engine
) -> None:
    postgres = database.dialect == "postgresql"
    with database.write_transaction() as session:
        session.connection().execute(_count("before"))
        with pipelined(session):
            assert _in_pipeline(session) is postgres
            session.connection().execute(_count("first"))
            session.connection().execute(_count("second"))
        assert not _in_pipeline(session)
        # Out of the block the transaction reads as usual, its own writes included.
        assert session.connection().scalar(sa.select(sa.func.count()).select_from(_COUNTERS)) == 3
        assert _keys(fresh_database) == set()  # nothing committed yet
    assert _keys(fresh_database) == {"before", "first", "second"}


def test_a_write_the_server_refuses_is_raised_and_nothing_is_kept(
    database: Database, fresh_database: sa.Engine
) -> None:
    orphan_event = sa.insert(_EVENTS).values(
        shop_id=1, contact_id=999_999, kind="submitted", occurred_at=NOON, data={}
    )  # no such shop or contact: the foreign keys refuse it

    def refused(last: bool) -> None:
        with database.write_transaction() as session:
            session.connection().execute(_count("before"))
            with pipelined(session):
                session.connection().execute(_count("queued"))
                session.connection().execute(orphan_event.inline())
                if not last:
                    session.connection().execute(_count("after"))

    for last in (True, False):  # refused at the end of the block, or by the statement after it
        with pytest.raises(IntegrityError):
            refused(last)
        assert _keys(fresh_database) == set()

    with database.write_transaction() as session:
        assert not _in_pipeline(session)
        session.connection().execute(_count("next"))
    assert _keys(fresh_database) == {"next"}


def test_an_error_inside_rolls_the_queued_writes_back(database: Database, fresh_database: sa.Engine) -> None:
    def changed_its_mind() -> None:
        with database.write_transaction() as session, pipelined(session):
            session.connection().execute(_count("queued"))
            raise RuntimeError("the caller changed its mind")

    with pytest.raises(RuntimeError, match="changed its mind"):
        changed_its_mind()
    assert _keys(fresh_database) == set()
    with database.write_transaction() as session:
        session.connection().execute(_count("next"))
    assert _keys(fresh_database) == {"next"}


@pytest.mark.postgresql  # a server-side disconnect: SQLite has no server, and no pipeline
def test_a_connection_lost_in_the_block_is_an_operational_error_and_leaves_the_pool(
    fresh_database: sa.Engine,
) -> None:
    # One pooled connection only: the next transaction would get the broken one if it were kept.
    engine = sa.create_engine(fresh_database.url, pool_size=1, max_overflow=0)
    database = Database(str(engine.url), engine=engine)
    admin = sa.create_engine(fresh_database.url, poolclass=sa.pool.NullPool)

    def lost() -> None:
        with database.write_transaction() as session:
            backend = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with pipelined(session):
                session.connection().execute(_count("queued"))
                with admin.connect() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
                time.sleep(0.2)  # the server has closed the connection before the block ends

    try:
        with pytest.raises(OperationalError):
            lost()
        with database.write_transaction() as session:
            assert not _in_pipeline(session)
            session.connection().execute(_count("next"))
        assert _keys(fresh_database) == {"next"}
    finally:
        admin.dispose()
        engine.dispose()


# --- the sync's writes ------------------------------------------------------------------------------------


@pytest.fixture
def synced(database: Database) -> tuple[ContactService, int]:
    service = ContactService(database, Keyring(TEST_SECRET_KEY))
    with database.write_transaction() as session:
        shop = register_shop(
            session,
            Keyring(TEST_SECRET_KEY),
            platform="shopify",
            domain="pipelined.myshopify.com",
            token="shpat_test",
        )
    return service, shop.id


def test_a_syncs_writes_and_the_callers_go_together(
    database: Database, synced: tuple[ContactService, int]
) -> None:
    service, shop_id = synced
    service.sync(shop_id, Collected(email="known@example.com", first_name="Known"), source=Source.FORM)
    seen: list[bool] = []
    records = [  # a new contact, and a change to a known one (an UPDATE)
        Collected(email="new@example.com", first_name="New"),
        Collected(email="known@example.com", last_name="Lee"),
    ]
    with database.write_transaction() as session:
        service.sync_in_transaction(
            session, shop_id, records, source=Source.FORM, evidence=[{}, {}],
            then_write=lambda: seen.append(_in_pipeline(session)),
        )  # fmt: skip
        assert not _in_pipeline(session)
    assert seen == [database.dialect == "postgresql"]
    with database.sessionmaker() as session:
        names = {
            row.email: row.last_name for row in session.execute(sa.select(Contact.email, Contact.last_name))
        }
    assert names == {"new@example.com": None, "known@example.com": "Lee"}


def test_a_record_whose_events_need_a_copy_is_written_outside_the_pipeline(
    database: Database, synced: tuple[ContactService, int]
) -> None:
    # Eight contacts share an email (each its own phone); one record unsubscribing the email adds an event
    # for every other holder: eight events, so the batch writes them with COPY, which a pipeline refuses.
    service, shop_id = synced
    for i in range(8):
        service.sync(
            shop_id, Collected(email=f"a{i}@example.com", phone=f"+1415555{2600 + i}"), source=Source.FORM
        )
    with database.write_transaction() as session:
        session.execute(sa.update(Contact).values(email="shared@example.com"))
    unsubscribe = Collected(
        email="shared@example.com", phone="+14155552600", email_consent=ConsentIntent.UNSUBSCRIBE
    )
    with database.write_transaction() as session:
        service.sync_in_transaction(session, shop_id, [unsubscribe], source=Source.FORM, evidence=[{}])
    with database.sessionmaker() as session:
        states = set(session.scalars(sa.select(Contact.email_consent)))
    assert states == {"unsubscribed"}
