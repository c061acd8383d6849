"""The hottest paths' statements on PostgreSQL: prepared once per connection and run through libpq directly.

A storefront submission runs about ten statements. Run through SQLAlchemy's ``Connection.execute`` each
cost ~250 µs of the app's CPU here, through psycopg's cursor ~90 µs, through libpq's ``PQexecPrepared``
~30 µs; the statements' own work in PostgreSQL is the same for all three. SQLAlchemy and psycopg together
were half of a submission's CPU (docs/performance.md, "A submission's statements through libpq").

``run(connection, statement, params)`` takes the statement SQLAlchemy would run, on the connection (and
so in the transaction) it would run it on, and returns its rows with the methods the callers use
(``first``, ``one``, ``scalar``, ``mappings``, iteration). What it does on PostgreSQL:

- the statement is compiled once (for an ``INSERT``/``UPDATE``, once per set of columns given) with
  ``$n`` placeholders, each parameter passed through its column type's bind processor as SQLAlchemy
  would, then turned into text by psycopg's own adapters; the result's values are read by psycopg's
  loaders (as a cursor would), timestamps moved to UTC as ``UTCDateTime`` does;
- it is prepared on the connection the first time it runs there (the names are ``popsync_<n>``; psycopg's
  own are ``_pg3_<n>``), with every parameter's type left to the server (the compiled SQL casts where
  it must), so a value of another size or a ``NULL`` never needs a second plan;
- a transaction the connection should be in is begun as psycopg would begin it (``BEGIN`` with the
  connection's isolation level and access mode), so psycopg and SQLAlchemy see the transaction they
  expect and commit or roll it back;
- an error is raised as SQLAlchemy raises it (``IntegrityError``, ``OperationalError`` …, without the
  parameters), and a connection lost on the way is invalidated, so the pool drops it and the app answers
  503 as for any lost connection.

``run_all(connection, [(statement, params), …])`` runs statements that follow each other anyway (a sync's
identifier locks and its read; a batch's contact, event, push and form count) in one libpq pipeline: one
round trip, the server running them in order as before. The ``BEGIN`` and a first ``PREPARE`` go in the same
pipeline, so a transaction's first statement costs one round trip, not two or three. A submission went
from eleven round trips to six (docs/performance.md, "A submission's round trips").

Everywhere else (SQLite, a connection in pipeline mode, a statement with expanding ``IN`` parameters or
column defaults to compute, an executemany of many rows) the statement goes through
``Connection.execute`` as before: same rows, same errors.
"""

from __future__ import annotations

import collections
import itertools
import select
import threading
import weakref
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq
from psycopg.adapt import PyFormat
from psycopg.adapt import Transformer
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.sql.dml import ValuesBase

# Rows of more than this many parameter sets go through SQLAlchemy's executemany (psycopg pipelines them);
# one or a few (a submission's one contact, event and push) go one statement after the other.
_MANY_AT_MOST = 4
_TIMESTAMPTZ_OID = 1184

_DOLLAR_DIALECT = psycopg_dialect.dialect(paramstyle="numeric_dollar")
_DRIVER_DIALECT = psycopg_dialect.dialect()
_names = itertools.count(1)
_compile_lock = threading.Lock()


@dataclass(frozen=True)
class _Compiled:
    """A statement as libpq runs it: its SQL, its parameters in ``$n`` order with their bind processors,
    the values the statement binds itself and the parameters a caller must give."""

    name: bytes
    sql: bytes
    order: tuple[str, ...]
    processors: tuple[Any, ...]
    defaults: Mapping[str, Any]
    required: frozenset[str]
    text: str


# Keyed by the statement's identity (and an INSERT's or UPDATE's columns); the statement is kept in the
# value so its id cannot be reused. Statements here are the hot paths' module constants: a bounded set.
_COMPILED: dict[tuple[int, tuple[str, ...]], tuple[Any, _Compiled | None]] = {}
# The names prepared on each psycopg connection (a new connection starts with none).
_PREPARED: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = weakref.WeakKeyDictionary()


class Rows:
    """A statement's rows, read: what the callers use of SQLAlchemy's ``Result``."""

    def __init__(self, keys: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self._keys = tuple(keys)
        self._rows = rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def one(self) -> tuple[Any, ...]:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound("no row") if not self._rows else sa.exc.MultipleResultsFound("rows")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def mappings(self) -> list[dict[str, Any]]:
        return [dict(zip(self._keys, row, strict=True)) for row in self._rows]


def run(
    connection: sa.Connection,
    statement: Any,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Rows | sa.CursorResult[Any]:
    """``connection.execute(statement, params)``, through libpq on PostgreSQL (the module's docstring)."""
    driver = _driver_connection(connection)
    executions = None if driver is None else _executions(statement, params)
    if driver is None or executions is None:
        return connection.execute(statement, params)
    result = Rows((), [])
    for compiled, values in executions:
        result = _execute(connection, driver, compiled, values)
    return result


def run_all(
    connection: sa.Connection,
    statements: Sequence[tuple[Any, Mapping[str, Any] | Sequence[Mapping[str, Any]] | None]],
) -> list[Rows | sa.CursorResult[Any]]:
    """Each ``(statement, params)`` as ``run`` runs it, in order, and each one's result; on PostgreSQL in
    one round trip (a libpq pipeline) when every one can go through libpq.

    For statements that follow each other anyway: a sync's locks and its read, a batch's writes. The server
    runs them one after the other as it would have; only the waits between them go (a round trip cost a
    submission more CPU, in the app and in PostgreSQL, than most of its statements). The first one to fail
    is raised as ``run`` raises it, and the ones after it are not run (inside a transaction PostgreSQL has
    aborted it anyway)."""
    driver = _driver_connection(connection)
    planned = [] if driver is None else [_executions(statement, params) for statement, params in statements]
    if driver is None or len(statements) < 2 or any(executions is None for executions in planned):
        return [_read(run(connection, statement, params)) for statement, params in statements]
    transformer = Transformer(driver)  # one for the statements' parameters and their rows, as a cursor has
    calls = [
        (compiled, _dumped(transformer, compiled, values))
        for executions in planned
        for compiled, values in executions or ()
    ]
    results = iter(_results(connection, driver, calls))
    # A statement given several parameter sets answers with its last one's rows, as ``run`` does.
    answers: list[Rows | sa.CursorResult[Any]] = []
    for executions in planned:
        answer = Rows((), [])
        for _ in executions or ():
            answer = _rows(transformer, next(results))
        answers.append(answer)
    return answers


def _read(result: Rows | sa.CursorResult[Any]) -> Rows | sa.CursorResult[Any]:
    """A result's rows read at once, as a pipeline reads every answer (SQLite keeps a statement whose rows
    were not all fetched in progress, and then refuses to commit)."""
    if isinstance(result, sa.CursorResult) and result.returns_rows:
        return Rows(list(result.keys()), list(result.all()))
    return result


def _executions(
    statement: Any, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
) -> list[tuple[_Compiled, Mapping[str, Any]]] | None:
    """The statement compiled for libpq with each of its parameter sets, or None when it is SQLAlchemy's
    to run (an executemany of many rows, a statement this module does not compile)."""
    many = params if isinstance(params, Sequence) and not isinstance(params, Mapping) else None
    if many is not None and not (0 < len(many) <= _MANY_AT_MOST):
        return None
    parameter_sets: Sequence[Mapping[str, Any]] = many if many is not None else [params or {}]
    compiled = _compiled(statement, parameter_sets[0])
    if compiled is None:
        return None
    return [(compiled, values) for values in parameter_sets]


def _driver_connection(connection: sa.Connection) -> psycopg.Connection[Any] | None:
    """The connection's psycopg connection when this module may run statements on it, else None."""
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return None
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        return None
    if driver.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        return None  # psycopg is reading a pipeline's answers on it
    return driver


def _begin_command(driver: psycopg.Connection[Any]) -> bytes:
    """The ``BEGIN`` psycopg sends before a transaction's first statement, with the connection's options
    (SQLAlchemy sets the isolation level on every connection it hands out)."""
    parts = [b"BEGIN"]
    if driver.isolation_level is not None:
        parts.append(b"ISOLATION LEVEL " + driver.isolation_level.name.replace("_", " ").encode())
    if driver.read_only is not None:
        parts.append(b"READ ONLY" if driver.read_only else b"READ WRITE")
    if driver.deferrable is not None:
        parts.append(b"DEFERRABLE" if driver.deferrable else b"NOT DEFERRABLE")
    return b" ".join(parts)


def _compiled(statement: Any, params: Mapping[str, Any]) -> _Compiled | None:
    """The statement compiled for libpq, or None when this module leaves it to SQLAlchemy."""
    columns = tuple(sorted(params)) if isinstance(statement, ValuesBase) else ()
    key = (id(statement), columns)
    cached = _COMPILED.get(key)
    if cached is not None:
        return cached[1]
    with _compile_lock:
        compiled = _compile(statement, columns)
        _COMPILED[key] = (statement, compiled)
    return compiled


def _compile(statement: Any, columns: tuple[str, ...]) -> _Compiled | None:
    if not isinstance(statement, sa.sql.ClauseElement):
        return None
    compiled = statement.compile(dialect=_DOLLAR_DIALECT, column_keys=list(columns) or None)
    binds = compiled.binds
    if any(bind.expanding or bind.literal_execute or bind.callable for bind in binds.values()):
        return None  # IN lists rendered per call, values computed per call
    if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
        return None  # column defaults computed by SQLAlchemy at each call
    order = tuple(compiled.positiontup or ())
    processors = tuple(
        binds[name].type.dialect_impl(_DRIVER_DIALECT).bind_processor(_DRIVER_DIALECT) for name in order
    )
    defaults = {name: bind.value for name, bind in binds.items() if not bind.required}
    text = str(compiled)
    return _Compiled(
        name=f"popsync_{next(_names)}".encode(),
        sql=text.encode(),
        order=order,
        processors=processors,
        defaults=defaults,
        required=frozenset(name for name, bind in binds.items() if bind.required),
        text=text,
    )


def _execute(
    connection: sa.Connection, driver: psycopg.Connection[Any], compiled: _Compiled, params: Mapping[str, Any]
) -> Rows:
    transformer = Transformer(driver)
    return _rows(
        transformer, _results(connection, driver, [(compiled, _dumped(transformer, compiled, params))])[0]
    )


def _dumped(transformer: Transformer, compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    """The statement's parameters in ``$n`` order, as text for libpq; SQLAlchemy's error for a bad one."""
    values = []
    try:
        for name, process in zip(compiled.order, compiled.processors, strict=True):
            if name in params:
                value = params[name]
            elif name in compiled.required:
                raise sa.exc.InvalidRequestError(f"A value is required for bind parameter {name!r}")
            else:
                value = compiled.defaults.get(name)
            # As SQLAlchemy does: the type's conversion sees None too (a JSON column's None is JSON null).
            values.append(value if process is None else process(value))
        return transformer.dump_sequence(values, [PyFormat.TEXT] * len(values))
    except (sa.exc.InvalidRequestError, psycopg.Error, TypeError, ValueError) as error:
        raise sa.exc.StatementError(str(error), compiled.text, None, error, hide_parameters=True) from error


def _results(
    connection: sa.Connection,
    driver: psycopg.Connection[Any],
    calls: Sequence[tuple[_Compiled, Sequence[Any]]],
) -> list[pq.abc.PGresult]:
    """Run the prepared statements with their dumped parameters; their results, or SQLAlchemy's error."""
    pgconn = driver.pgconn
    if not driver.autocommit and not connection.in_transaction():
        connection.begin()  # SQLAlchemy's side of the BEGIN sent below (no round trip of its own)
    try:
        try:
            return _prepared_and_run(driver, calls)
        except psycopg.errors.InvalidSqlStatementName:
            # The server no longer has our statements (someone ran DEALLOCATE ALL or DISCARD ALL, a pooler
            # in between). Outside a transaction nothing was lost: prepare again and run it once more.
            # Inside one the server has aborted the transaction, and the caller's error handling follows.
            _PREPARED.pop(driver, None)
            if pgconn.transaction_status != pq.TransactionStatus.IDLE or len(calls) > 1:
                raise
            return _prepared_and_run(driver, calls)
    except psycopg.Error as error:
        lost = pgconn.status == pq.ConnStatus.BAD or connection.dialect.is_disconnect(error, driver, None)
        if lost:
            # What SQLAlchemy does with a disconnect it sees itself: the connection is dropped, and so is
            # every connection the pool handed out before it (they were cut by the same restart).
            connection.engine.pool._invalidate(connection.connection, error)
            connection.invalidate(error)
        failed = calls[0][0].text if len(calls) == 1 else "; ".join(compiled.text for compiled, _ in calls)
        raise sa.exc.DBAPIError.instance(
            failed, None, error, psycopg.Error, hide_parameters=True, connection_invalidated=lost
        ) from error


def _rows(transformer: Transformer, result: pq.abc.PGresult) -> Rows:
    """A result's rows, read by psycopg's loaders (as a cursor would), timestamps in UTC."""
    if result.status != pq.ExecStatus.TUPLES_OK:
        return Rows((), [])
    transformer.set_pgresult(result)
    rows = transformer.load_rows(0, result.ntuples, tuple)
    keys = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
    timestamps = [i for i in range(result.nfields) if result.ftype(i) == _TIMESTAMPTZ_OID]
    if timestamps:
        rows = [_in_utc(row, timestamps) for row in rows]
    return Rows(keys, _named(keys, rows))


def _prepared_and_run(
    driver: psycopg.Connection[Any], calls: Sequence[tuple[_Compiled, Sequence[Any]]]
) -> list[pq.abc.PGresult]:
    """Run the statements, each ``PREPARE``d the first time on this connection, after a ``BEGIN`` when the
    connection should be in a transaction and is not yet. One statement already prepared inside a
    transaction is one ``PQexecPrepared``; anything more goes in one libpq pipeline, one round trip."""
    pgconn = driver.pgconn
    begin = not driver.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE
    prepared = _PREPARED.setdefault(driver, set())
    unprepared = list({c.name: c for c, _ in calls if c.name not in prepared}.values())
    if not begin and not unprepared and len(calls) == 1:
        compiled, dumped = calls[0]
        return [_check(driver, pgconn.exec_prepared(compiled.name, dumped))]
    pgconn.enter_pipeline_mode()
    try:
        if begin:
            pgconn.send_query_params(_begin_command(driver), None)
        for compiled in unprepared:
            pgconn.send_prepare(compiled.name, compiled.sql)
        for compiled, dumped in calls:
            pgconn.send_query_prepared(compiled.name, dumped)
        pgconn.pipeline_sync()
        answers = [_pipeline_result(driver) for _ in range(int(begin) + len(unprepared) + len(calls))]
        if _pipeline_result(driver).status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.OperationalError("the database's answers to a pipeline were out of step")
    finally:
        _leave_pipeline(pgconn)
    for compiled, answer in zip(unprepared, answers[int(begin) :], strict=False):
        if answer.status == pq.ExecStatus.COMMAND_OK:  # a statement prepared stays, whatever the transaction
            prepared.add(compiled.name)
    # The first failure is the error (the ones after it were not run: PIPELINE_ABORTED).
    for answer in answers:
        _check(driver, answer)
    return answers[int(begin) + len(unprepared) :]


def _leave_pipeline(pgconn: pq.abc.PGconn) -> None:
    """Out of pipeline mode; a connection whose answers could not all be read is closed (its state is
    unknown), and so is dropped from the pool as a lost one."""
    if pgconn.status == pq.ConnStatus.BAD or pgconn.pipeline_status == pq.PipelineStatus.OFF:
        return
    try:
        pgconn.exit_pipeline_mode()
    except psycopg.Error:
        pgconn.finish()


def _pipeline_result(driver: psycopg.Connection[Any]) -> pq.abc.PGresult:
    """The next answer of a pipeline (and the end-of-answer marker after it; a sync has none)."""
    pgconn = driver.pgconn
    result = _next_result(pgconn)
    if result is None or pgconn.status == pq.ConnStatus.BAD:
        message = (pgconn.error_message or b"").decode(errors="replace").strip()
        raise psycopg.OperationalError(message or "the connection to the database was lost")
    if result.status != pq.ExecStatus.PIPELINE_SYNC:
        _next_result(pgconn)  # None: the end of this statement's answer
    return result


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """``PQgetResult`` once it will not wait: the wait for the server is here, with Python's lock released
    (as in PQexecPrepared). PQgetResult would wait holding it, and another thread of the process that holds
    a lock this statement waits for (an identifier's) could then never commit."""
    while pgconn.is_busy():
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        poller.poll()
        pgconn.consume_input()
    return pgconn.get_result()


def _check(driver: psycopg.Connection[Any], result: pq.abc.PGresult) -> pq.abc.PGresult:
    """The result, or psycopg's error for it (its class names the SQLSTATE; a lost connection's is an
    ``OperationalError``)."""
    if driver.pgconn.status == pq.ConnStatus.BAD:
        message = (result.error_message or b"").decode(errors="replace").strip()
        raise psycopg.OperationalError(message or "the connection to the database was lost")
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
    return result


def _in_utc(row: tuple[Any, ...], columns: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in columns:
        value = values[i]
        if isinstance(value, datetime):
            values[i] = value.astimezone(UTC)
    return tuple(values)


_ROW_TYPES: dict[tuple[str, ...], type] = {}


def _named(keys: list[str], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows whose columns can also be read by name (``row.id``), as SQLAlchemy's rows can."""
    key = tuple(keys)
    row_type = _ROW_TYPES.get(key)
    if row_type is None:
        row_type = _ROW_TYPES[key] = collections.namedtuple("Row", key, rename=True)  # type: ignore[misc]
    return [row_type._make(row) for row in rows]  # type: ignore[attr-defined]
