"""``run`` (app/prepared.py) on a database whose commits are real: the hot paths' statements through libpq on
PostgreSQL, through SQLAlchemy elsewhere, with the same rows, the same transactions and the same errors.

On PostgreSQL: a statement run first in a transaction begins it (a rollback keeps nothing); a write the
server refuses is SQLAlchemy's ``IntegrityError`` and the transaction rolls back; a connection lost is an
``OperationalError`` (a 503) and leaves the pool; statements the server lost (``DEALLOCATE ALL``) are
prepared again; a ROLLBACK does not lose them (psycopg, which would deallocate every statement after one,
prepares none). Rows read by name and as mappings, timestamps in UTC, JSON as values.

``run_all``: statements sent together run in order in one round trip (their ``BEGIN`` and first
``PREPARE`` with them), the first refused one is the error and the ones after it are not run; a storefront
submission takes six round trips (seven for a returning shopper)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextlib import nullcontext
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import ProgrammingError

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.crypto import Keyring
from app.db import Database
from app.db import connection_of
from app.db import create_db_engine
from app.db import init_app
from app.enums import Source
from app.models import Contact
from app.models import ContactEvent
from app.models import RateLimitCounter
from app.prepared import Rows
from app.prepared import run
from app.prepared import run_all
from app.shops import register_shop
from tests.conftest import TEST_SECRET_KEY

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_COUNTERS: sa.Table = RateLimitCounter.__table__  # type: ignore[assignment]
_EVENTS: sa.Table = ContactEvent.__table__  # type: ignore[assignment]
# Module constants, as the hot paths' statements are (run compiles each once).
_COUNT = sa.insert(_COUNTERS).inline()
_READ = sa.select(_COUNTERS.c.key, _COUNTERS.c.window_start, _COUNTERS.c.count).where(
    _COUNTERS.c.key == sa.bindparam("key", type_=_COUNTERS.c.key.type)
)
_BUMP = sa.text("UPDATE rate_limit_counters SET count = count + :by WHERE key = :key RETURNING count")
_JSON = sa.text("SELECT CAST(:document AS jsonb) AS document, CAST(NULL AS text) AS nothing")


def _keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.scalars(sa.select(_COUNTERS.c.key)))


def _count(session_or_connection: sa.Connection, key: str, window_start: datetime = NOON) -> None:
    run(session_or_connection, _COUNT, {"key": key, "window_start": window_start, "count": 1})


@pytest.fixture
def database(fresh_database: sa.Engine) -> Database:
    return Database(str(fresh_database.url), engine=fresh_database)


def test_rows_read_as_sqlalchemys_do(database: Database) -> None:
    postgres = database.dialect == "postgresql"
    elsewhere = datetime(2026, 11, 30, 13, 0, tzinfo=timezone(timedelta(hours=1)))  # noon UTC
    with database.write_transaction() as session:
        connection = session.connection()
        _count(connection, "a", elsewhere)
        result = run(connection, _READ, {"key": "a"})
        assert isinstance(result, Rows) is postgres  # SQLite: SQLAlchemy's own result
        row = result.one()
        assert (row.key, row.count) == ("a", 1)
        assert row.window_start == NOON
        assert row.window_start.utcoffset() == timedelta(0)
        assert list(run(connection, _READ, {"key": "a"}).mappings()) == [
            {"key": "a", "window_start": NOON, "count": 1}
        ]
        assert run(connection, _READ, {"key": "none"}).first() is None
        assert run(connection, _BUMP, {"key": "a", "by": 2}).scalar() == 3
        if postgres:
            document = run(connection, _JSON, {"document": '{"tags": ["vip"]}'}).one()
            assert document == ({"tags": ["vip"]}, None)
            assert document.nothing is None


def test_a_statement_first_in_a_transaction_begins_it(database: Database, fresh_database: sa.Engine) -> None:
    class ChangedItsMind(Exception):
        pass

    def changed_its_mind() -> None:
        with database.write_transaction() as session:
            _count(session.connection(), "rolled back")
            raise ChangedItsMind

    with pytest.raises(ChangedItsMind):
        changed_its_mind()
    assert _keys(fresh_database) == set()

    with database.write_transaction() as session:
        _count(session.connection(), "first")
        _count(session.connection(), "second")
        assert _keys(fresh_database) == set()  # nothing committed yet
    assert _keys(fresh_database) == {"first", "second"}


def test_a_write_the_server_refuses_is_raised_and_nothing_is_kept(
    database: Database, fresh_database: sa.Engine
) -> None:
    def twice() -> None:
        with database.write_transaction() as session:
            _count(session.connection(), "kept only with the next")
            _count(session.connection(), "kept only with the next")  # the same key and window

    with pytest.raises(IntegrityError):
        twice()
    assert _keys(fresh_database) == set()
    with database.write_transaction() as session:
        _count(session.connection(), "next")
    assert _keys(fresh_database) == {"next"}


def test_a_few_rows_run_one_by_one_and_many_through_executemany(
    database: Database, fresh_database: sa.Engine
) -> None:
    for count in (3, 12):
        rows = [{"key": f"{count}-{i}", "window_start": NOON, "count": 1} for i in range(count)]
        with database.write_transaction() as session:
            run(session.connection(), _COUNT, rows)
    assert len(_keys(fresh_database)) == 15


def test_on_a_connection_of_its_own_the_transaction_is_sqlalchemys_to_commit(
    database: Database, fresh_database: sa.Engine
) -> None:
    with fresh_database.connect() as connection:
        _count(connection, "committed")
        assert connection.in_transaction()
        connection.commit()
        _count(connection, "rolled back")
        connection.rollback()
    assert _keys(fresh_database) == {"committed"}


def test_a_missing_parameter_is_refused_as_sqlalchemy_refuses_it(
    database: Database, fresh_database: sa.Engine
) -> None:
    with pytest.raises(sa.exc.StatementError, match="key"), database.write_transaction() as session:
        run(session.connection(), _READ, {})
    with pytest.raises(sa.exc.StatementError, match="naive"), database.write_transaction() as session:
        _count(session.connection(), "naive", datetime(2026, 11, 30, 12, 0))
    assert _keys(fresh_database) == set()


@pytest.mark.postgresql  # prepared statements, ROLLBACK and DEALLOCATE are the server's
def test_prepared_statements_survive_rollbacks_and_are_prepared_again_when_lost(
    database: Database, fresh_database: sa.Engine
) -> None:
    with database.write_transaction() as session:
        _count(session.connection(), "a")
    for _ in range(3):
        with database.write_transaction() as session:
            connection = session.connection()
            for _ in range(6):  # psycopg would have prepared this one, and deallocated all at the rollback
                connection.execute(_READ, {"key": "a"}).all()
            assert run(connection, _READ, {"key": "a"}).one().count == 1
            with pytest.raises(IntegrityError), session.begin_nested():
                _count(session.connection(), "a")  # refused, the savepoint rolled back
            assert run(connection, _READ, {"key": "a"}).one().count == 1
            session.rollback()

    autocommit = database.autocommit()
    assert autocommit is not None
    with autocommit as connection:
        assert run(connection, _READ, {"key": "a"}).one().count == 1
        connection.exec_driver_sql("DEALLOCATE ALL")
        assert run(connection, _READ, {"key": "a"}).one().count == 1  # prepared again, run again

    with database.write_transaction() as session:
        connection = session.connection()
        assert run(connection, _READ, {"key": "a"}).one().count == 1
        connection.exec_driver_sql("DEALLOCATE ALL")
        with pytest.raises(ProgrammingError):  # inside a transaction: it was aborted
            run(connection, _READ, {"key": "a"})
        session.rollback()
    with database.write_transaction() as session:
        assert run(session.connection(), _READ, {"key": "a"}).one().count == 1
    database.engine.dispose()  # the autocommit pool with it


@pytest.mark.postgresql  # a server-side disconnect: SQLite has no server
def test_a_connection_lost_is_an_operational_error_and_leaves_the_pool(fresh_database: sa.Engine) -> None:
    # One pooled connection only: the next transaction would get the broken one if it were kept.
    engine = sa.create_engine(fresh_database.url, pool_size=1, max_overflow=0)
    database = Database(str(engine.url), engine=engine)
    admin = sa.create_engine(fresh_database.url, poolclass=sa.pool.NullPool)
    try:
        with database.write_transaction() as session:
            _count(session.connection(), "before")

        def lost() -> None:
            with database.write_transaction() as session:
                backend = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with admin.connect() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
                time.sleep(0.2)  # the server has closed the connection
                _count(session.connection(), "lost")

        with pytest.raises(OperationalError):
            lost()
        with database.write_transaction() as session:
            _count(session.connection(), "next")
        assert _keys(fresh_database) == {"before", "next"}
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
            domain="prepared.myshopify.com",
            token="shpat_test",
        )
    return service, shop.id


def test_a_syncs_writes_and_the_callers_commit_together(
    database: Database, fresh_database: sa.Engine, synced: tuple[ContactService, int]
) -> None:
    service, shop_id = synced
    service.sync(shop_id, Collected(email="known@example.com", first_name="Known"), source=Source.FORM)
    records = [  # a new contact, and a change to a known one (an UPDATE)
        Collected(email="new@example.com", first_name="New"),
        Collected(email="known@example.com", last_name="Lee"),
    ]
    with database.write_transaction() as session:
        service.sync_in_transaction(
            session, shop_id, records, source=Source.FORM, evidence=[{}, {}],
            then_write=[(_COUNT, {"key": "the caller's", "window_start": NOON, "count": 1})],
        )  # fmt: skip
        assert _keys(fresh_database) == set()
    assert _keys(fresh_database) == {"the caller's"}
    with database.sessionmaker() as session:
        names = {
            row.email: row.last_name for row in session.execute(sa.select(Contact.email, Contact.last_name))
        }
    assert names == {"new@example.com": None, "known@example.com": "Lee"}


def test_a_record_whose_events_need_a_copy_is_written(
    database: Database, synced: tuple[ContactService, int]
) -> None:
    # Eight contacts share an email (each its own phone); one record unsubscribing the email adds an event
    # for every other holder: eight events, so the batch writes them with COPY among the prepared writes.
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


@pytest.mark.postgresql  # a server restart: SQLite has no server
def test_a_lost_connection_drops_the_pools_older_connections_too(fresh_database: sa.Engine) -> None:
    # Two pooled connections, both cut (as a restart cuts them). Used a moment ago, neither is pinged at
    # checkout: only the pool-wide invalidation on the first failure spares the next transaction the other.
    engine = create_db_engine(str(fresh_database.url), pool_size=2, max_overflow=0)
    database = Database(str(engine.url), engine=engine)
    admin = sa.create_engine(fresh_database.url, poolclass=sa.pool.NullPool)
    try:
        with database.write_transaction() as first, database.write_transaction() as second:
            _count(first.connection(), "one")
            _count(second.connection(), "two")
            backends = [
                session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
                for session in (first, second)
            ]
        with admin.connect() as other:
            for backend in backends:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        time.sleep(0.2)

        def lost() -> None:
            with database.write_transaction() as session:
                _count(session.connection(), "lost")

        with pytest.raises(OperationalError):
            lost()
        with database.write_transaction() as session:
            _count(session.connection(), "next")
        assert _keys(fresh_database) == {"one", "two", "next"}
    finally:
        admin.dispose()
        engine.dispose()


def test_inside_a_write_transaction_the_session_hands_its_connection_once(database: Database) -> None:
    with database.write_transaction() as session:
        assert connection_of(session) is session.connection()
    # Out of the block: the session's own answer (a new transaction's connection).
    with database.sessionmaker() as session:
        assert connection_of(session) is session.connection()


@pytest.mark.postgresql  # autocommit connections are PostgreSQL's (SQLite has none)
def test_a_request_uses_one_autocommit_connection_and_gives_it_back(fresh_database: sa.Engine) -> None:
    app = Flask(__name__)
    database = Database(str(fresh_database.url), engine=fresh_database)
    init_app(app, database)
    with app.test_request_context():
        first = database.autocommit()
        second = database.autocommit()
        assert first is not None
        assert second is not None
        with first as one, second as other:
            assert one is other
            assert run(one, _READ, {"key": "none"}).first() is None
        assert not one.closed  # kept for the rest of the request
    assert one.closed  # and given back when it ended
    with app.app_context():  # no request (a CLI command, the worker): a connection per block
        block = database.autocommit()
        assert block is not None
        with block as connection:
            assert connection is not one
    fresh_database.dispose()


def _round_trips(trace: Path) -> int:
    """Round trips in a libpq trace (read once tracing has stopped: libpq buffers it): the server ends each
    answer with one ReadyForQuery."""
    return sum("\tReadyForQuery\t" in line for line in trace.read_text().splitlines())


@contextmanager
def traced(tmp_path: Path) -> Iterator[Path]:
    """A libpq trace of every pooled connection checked out in the block (every pool: the autocommit one
    too), into one file."""
    trace = tmp_path / "libpq.trace"
    sink = trace.open("w")
    traced_connections: list[Any] = []

    def start(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pgconn = dbapi_connection.pgconn
        pgconn.trace(sink.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        traced_connections.append(pgconn)

    event.listen(sa.pool.Pool, "checkout", start)
    try:
        yield trace
    finally:
        event.remove(sa.pool.Pool, "checkout", start)
        for pgconn in traced_connections:
            pgconn.untrace()
        sink.close()


def test_statements_sent_together_run_in_order(
    database: Database, fresh_database: sa.Engine, tmp_path: Path
) -> None:
    postgres = database.dialect == "postgresql"
    for attempt in ("first, with the statements prepared on the way", "prepared already"):
        key = f"together {attempt}"
        with (
            traced(tmp_path) if postgres else nullcontext(None) as trace,
            database.write_transaction() as session,
        ):
            results = run_all(
                session.connection(),
                [
                    (_COUNT, {"key": key, "window_start": NOON, "count": 1}),
                    (_BUMP, {"key": key, "by": 2}),
                    (_READ, {"key": key}),
                ],
            )
            assert [row.count for row in results[2]] == [3]  # the read ran after both writes
        if trace is not None:
            # BEGIN, the PREPAREs the first time, and the three statements: one round trip; then COMMIT.
            assert _round_trips(trace) == 2, attempt
        assert key in _keys(fresh_database)  # committed with the transaction


def test_among_statements_sent_together_the_first_refused_is_the_error(
    database: Database, fresh_database: sa.Engine
) -> None:
    def refused() -> None:
        with database.write_transaction() as session:
            run_all(
                session.connection(),
                [
                    (_COUNT, {"key": "twice", "window_start": NOON, "count": 1}),
                    (_COUNT, {"key": "twice", "window_start": NOON, "count": 1}),
                    (_COUNT, {"key": "after the refusal", "window_start": NOON, "count": 1}),
                ],
            )

    with pytest.raises(IntegrityError):
        refused()
    assert _keys(fresh_database) == set()
    # The connection went back to the pool in a usable state (out of pipeline mode, transaction ended).
    with database.write_transaction() as session:
        run_all(
            session.connection(),
            [
                (_COUNT, {"key": "next", "window_start": NOON, "count": 1}),
                (_BUMP, {"key": "next", "by": 1}),
            ],
        )
        assert run(session.connection(), _READ, {"key": "next"}).one().count == 2
    assert _keys(fresh_database) == {"next"}


@pytest.mark.postgresql  # a statement the server cannot prepare
def test_a_statement_the_server_cannot_prepare_among_others_is_the_error(
    database: Database, fresh_database: sa.Engine
) -> None:
    broken = sa.text("SELECT no_such_column FROM rate_limit_counters WHERE key = :key")

    def send() -> None:
        with database.write_transaction() as session:
            run_all(
                session.connection(),
                [(_COUNT, {"key": "kept?", "window_start": NOON, "count": 1}), (broken, {"key": "x"})],
            )

    for _ in range(2):  # not taken for prepared after the first failure
        with pytest.raises(ProgrammingError):
            send()
    assert _keys(fresh_database) == set()


@pytest.mark.postgresql  # round trips are libpq's
def test_a_submission_takes_six_round_trips(fresh_database: sa.Engine, tmp_path: Path) -> None:
    from app import create_app
    from app.db import get_database
    from tests.conftest import add_shop
    from tests.conftest import app_config
    from tests.functional.test_submissions import add_form

    url = fresh_database.url.render_as_string(hide_password=False)
    app = create_app(app_config(url, DATABASE_ENGINE=fresh_database, SUBMISSION_RATE_LIMIT="100/minute"))
    shop = add_shop(app)
    form_id = add_form(get_database(app), shop)
    client = app.test_client()

    def submit(email: str, phone: str, first_name: str) -> int:
        body = {"shop": shop.domain, "form_id": form_id, "email": email, "phone": phone,
                "first_name": first_name, "email_consent": True}  # fmt: skip
        with traced(tmp_path) as trace:
            answer = client.post("/storefront/submissions", json=body)
        assert answer.status_code == 200, answer.get_json()
        return _round_trips(trace)

    submit("warm@example.com", "+1 415 555 2670", "Warm")  # the statements prepared on each pooled connection
    # The shop, the rate limits, BEGIN with the form's lock, the identifiers' locks with the read, the
    # writes (contact, event, platform push, form count), COMMIT.
    assert submit("new@example.com", "+1 415 555 2671", "Ann") == 6
    assert (
        submit("new@example.com", "+1 415 555 2671", "Anna") == 7
    )  # and the returning shopper's stored row, by id
    with fresh_database.connect() as connection:
        names = connection.execute(sa.text("SELECT first_name FROM contacts ORDER BY id")).scalars().all()
        counted = connection.execute(sa.text("SELECT sum(submissions) FROM form_daily_stats")).scalar()
    assert names == ["Warm", "Anna"]
    assert counted == 3
