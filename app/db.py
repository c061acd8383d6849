"""The database: declarative base, engine and sessions, and the few places SQLite and PostgreSQL differ.

SQLite (WAL) is the embedded default, PostgreSQL is production. Where they differ, this module is the one
place that says so:

- write transactions: PostgreSQL takes transaction-scoped advisory locks on the identifiers a sync touches
  (``lock_identifiers``); SQLite has one writer at a time, so a write transaction starts with
  ``BEGIN IMMEDIATE`` and holds the database's write lock from its first statement.
- JSON columns are JSONB on PostgreSQL and JSON text on SQLite.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextlib import contextmanager
from contextlib import nullcontext
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Generic
from typing import TypeVar

import sqlalchemy as sa
from flask import Flask
from flask import g
from flask import has_request_context
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from werkzeug.routing import IntegerConverter

from app.prepared import run

_Statement = TypeVar("_Statement")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A JSON document: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")


def aware_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (which zone it meant is unknown)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (SQLite stores it naive; we re-attach UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = aware_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_db_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine with popsync's connection settings for either database."""
    # Statement parameters are personal data and sealed tokens: never in a log line or an error's text
    # (SQLAlchemy puts them in both, with echo on and in every StatementError).
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        return engine
    if sa.make_url(url).get_driver_name() == "psycopg":
        # psycopg prepares a statement it has run five times, and after any ROLLBACK (a savepoint's too)
        # deallocates ALL prepared statements of the connection, app/prepared.py's with them. The hot
        # paths' statements are prepared there; psycopg prepares none.
        kwargs["connect_args"] = {"prepare_threshold": None, **kwargs.get("connect_args", {})}
    engine = sa.create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


# A pooled connection unused for longer than this is pinged before it is handed out; one used more recently
# is trusted. Pinging every checkout (``pool_pre_ping``) cost a round trip per transaction, three of them
# per storefront submission. A server restart still costs only the requests already using the connections
# it cut: the first of them to fail makes SQLAlchemy discard the whole pool.
PING_AFTER_IDLE_SECONDS = 1.0
_CHECKED_IN_AT = "popsync_checked_in_at"


def _ping_when_idle(engine: sa.Engine) -> None:
    @event.listens_for(engine, "checkin")
    def remember_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool replaces this connection and tries another (SQLAlchemy's pessimistic recipe).
            raise sa.exc.DisconnectionError("the connection was closed while idle") from error


def unicode_lower(value: Any) -> Any:
    """SQL ``lower()`` for SQLite connections: Python's ``str.lower`` for text; anything else as it is."""
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite(engine: sa.Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot do BEGIN IMMEDIATE or nest savepoints
    # reliably; switch it off and emit BEGIN ourselves (the recipe in SQLAlchemy's SQLite docs).
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # SQLite's own lower() folds ASCII only: "ÉMILE" stayed "ÉMILE", and a search for "émile" found
        # nothing. Python's folds every script, as PostgreSQL's does in a UTF-8 database. No SQLite index
        # holds lower(); the search table's triggers do (migration 0012), so it must be the same everywhere.
        dbapi_connection.create_function("lower", 1, unicode_lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """The engine and session factory of one app; ``app.extensions['popsync.db']``."""

    def __init__(self, url: str, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_db_engine(url)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._autocommit_engine: sa.Engine | None = None
        self._autocommit_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def parallel_transactions(self) -> bool:
        """Whether two transactions of this process can be open at once and make progress: PostgreSQL
        with a connection per session (SQLite has one writer at a time; tests bind every session to one
        connection)."""
        return self.dialect == "postgresql" and isinstance(self.sessionmaker.kw.get("bind"), sa.Engine)

    def bind_to(self, connection: sa.Connection) -> None:
        """Run every session on ``connection`` inside savepoints (tests roll the outer transaction back)."""
        self.sessionmaker = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    @contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """A session in a fresh transaction that may write; commits on success, rolls back on error.

        On SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``): a deferred transaction
        that reads and then writes can fail with "database is locked" instead of waiting its turn.
        """
        with self.sessionmaker() as session, session.begin():
            session.info[_CONNECTION] = session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            try:
                yield session
            finally:
                session.info.pop(_CONNECTION, None)

    def autocommit(self) -> AbstractContextManager[sa.Connection] | None:
        """A pooled connection on which each statement is its own transaction, to use as a context manager;
        None where there is none (SQLite, and tests that bind every session to one connection): the caller
        then runs its statement in a transaction of its own.

        For single statements on the hottest paths (a submission's shop and its rate-limit counters): no
        ``BEGIN`` and ``COMMIT`` (or ``ROLLBACK``) round trips around them. The connections come from a pool
        of their own that stays in autocommit."""
        bind = self.sessionmaker.kw.get("bind")
        if self.dialect != "postgresql" or not isinstance(bind, sa.Engine):
            return None
        engine = self._autocommit_engine
        if engine is None:
            with self._autocommit_lock:  # two first requests at once (threads) must make one pool
                engine = self._autocommit_pool(bind)
        if not has_request_context():
            return engine.connect()
        # One checkout for the request (a submission's shop read and its rate limits), returned to the pool
        # when the request ends (``init_app``): each checkout and checkin cost as much as a statement.
        connection: sa.Connection | None = g.get(_REQUEST_AUTOCOMMIT)
        if connection is None or connection.closed or connection.invalidated:
            connection = engine.connect()
            setattr(g, _REQUEST_AUTOCOMMIT, connection)
        return nullcontext(connection)  # left open at the block's end

    def _autocommit_pool(self, bind: sa.Engine) -> sa.Engine:
        if self._autocommit_engine is None:
            # A pool of its own whose connections stay in autocommit: switching a pooled connection to it
            # at checkout and back at checkin cost more than the statement (docs/performance.md).
            autocommit_engine = create_db_engine(
                self.url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8
            )
            # Closed with the main pool (``Database.engine.dispose()``: tests, workers after a fork).
            event.listen(bind, "engine_disposed", lambda _engine: autocommit_engine.dispose())
            self._autocommit_engine = autocommit_engine
        return self._autocommit_engine

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")


def upsert(session: Session, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` for the session's database: PostgreSQL's and SQLite's constructs have
    the same ``on_conflict_do_nothing`` / ``on_conflict_do_update``, but each lives in its own dialect."""
    return upsert_for(session.get_bind().dialect.name, table)


def upsert_for(dialect: str, table: Any) -> Any:
    """``upsert`` for a database named by its dialect (``"postgresql"`` or ``"sqlite"``)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table)


class PerDialect(Generic[_Statement]):
    """A statement built once for each database, the first time it is needed, then reused.

    On the hottest paths (a storefront submission, its rate limits) building a statement and working out
    its cache key cost more than running it; a statement built once carries its cache key with it. Build
    it from tables (``Model.__table__``), not ORM entities: SQLAlchemy runs an ORM-enabled statement through
    its ORM layer even when it returns plain rows (docs/performance.md, "A storefront submission")."""

    def __init__(self, build: Callable[[str], _Statement]) -> None:
        self._build = build
        self._built: dict[str, _Statement] = {}

    def __call__(self, session: Session | sa.Connection) -> _Statement:
        dialect = session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name
        statement = self._built.get(dialect)
        if statement is None:
            statement = self._built[dialect] = self._build(dialect)
        return statement


_REQUEST_AUTOCOMMIT = "popsync_autocommit"
_CONNECTION = "popsync_connection"


def connection_of(session: Session) -> sa.Connection:
    """``session.connection()``; inside ``Database.write_transaction`` the transaction's connection, kept
    when the block began (a submission asked the session for it eight times, each through the ORM's
    transaction machinery). Not for code that opens savepoints (``begin_nested``) inside the block: a
    savepoint's connection must come from ``session.connection()``."""
    connection: sa.Connection | None = session.info.get(_CONNECTION)
    if connection is None or connection.closed or connection.invalidated:
        return session.connection()
    return connection


_AFTER_COMMIT = "popsync_after_commit"


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Run ``callback`` once the session's transaction has committed (never if it rolls back).

    One listener for every session, registered once, reads the callbacks from ``session.info``:
    registering a listener per transaction (``event.listen(session, …, once=True)``) cost a storefront
    submission more than one of its statements."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT, None)
    for callback in callbacks or ():
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_commit(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the session's own transaction, not a savepoint in it
        session.info.pop(_AFTER_COMMIT, None)


def identifier_lock_key(shop_id: int, kind: str, value: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, stable across processes."""
    digest = hashlib.blake2b(f"{shop_id}\x00{kind}\x00{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_identifiers(session: Session, keys: Iterable[int]) -> None:
    """Serialise the transactions that touch the same identifiers, until this transaction ends.

    PostgreSQL: advisory locks taken in ascending key order, so two transactions wanting overlapping sets
    never wait on each other in a cycle. SQLite: nothing to do, ``BEGIN IMMEDIATE`` already holds the only
    write lock there is.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    connection = connection_of(session)
    for statement, params in identifier_locks(keys):
        run(connection, statement, params)


def identifier_locks(keys: Iterable[int]) -> list[tuple[sa.TextClause, dict[str, int]]]:
    """PostgreSQL: ``lock_identifiers``' statements, in the order they must run (for a caller that sends
    them together with the read they guard, app/prepared.py ``run_all``)."""
    return [(_ADVISORY_LOCK, {"key": key}) for key in sorted(set(keys))]


_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


class RowIdConverter(IntegerConverter):
    """``<int:…>`` in every route is a row id: at most 18 digits, far above any id a table reaches and
    below the largest 64-bit integer both databases store. A longer number matches no route (404), where
    the database would refuse the query (OverflowError on SQLite, "bigint out of range" on PostgreSQL).

    A pattern rather than ``max``: werkzeug turns a converter's refusal into a 405 when the path has
    routes for other methods."""

    regex = r"\d{1,18}"


def init_app(app: Flask, database: Database) -> None:
    app.extensions["popsync.db"] = database
    # Before the blueprints are registered: their rules take the converter when they are added.
    app.url_map.converters["int"] = RowIdConverter

    @app.teardown_appcontext
    def close_request_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()
        autocommit = g.pop(_REQUEST_AUTOCOMMIT, None)
        if autocommit is not None:
            autocommit.close()


def get_database(app: Flask | None = None) -> Database:
    from flask import current_app

    return (app or current_app).extensions["popsync.db"]


def request_session() -> Session:
    """The request's read session (closed when the request ends). Writes go through the services."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    return g.db_session


def end_read_session() -> None:
    """Close the request's read session, if it opened one: a write transaction follows, and no read snapshot
    should be held across it. (``request_session().close()`` made a session just to close it.)"""
    session = g.get("db_session")
    if session is not None:
        session.close()
