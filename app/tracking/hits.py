"""The fast path: an open or a click becomes one row in ``tracking_hits``, and nothing more, in the request.

One statement inserts the hit only when the shop is installed and neither of the recipient's identifiers
is on the shop's erasure list (rule 11), so an uninstalled shop's or an erased person's links record
nothing without a second round trip. No sync and no platform call happen here: the worker turns hits into
syncs in batches (``app/tracking/drain.py``).

Durability: on PostgreSQL the hit is committed with ``synchronous_commit = off`` (asynchronous commit).
The commit returns once the row is in the server's WAL buffers; the WAL writer flushes them at least every
``wal_writer_delay`` (200 ms by default), so a crash of the database *server* loses at most about three
times that (~600 ms) of hits, never more, and never leaves anything half-applied. A crash of the *app*
loses nothing that was answered: the server has the row before the app answers. Submissions never use
this (the contract allows it for opens and clicks only). SQLite commits in WAL mode with
``synchronous=NORMAL``: the same guarantee for the app, and the last transactions may be lost only on a
power failure of the machine.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime

import psycopg
import sqlalchemy as sa
from psycopg import pq

from app.contacts.service import SUPPRESSION_PURPOSE
from app.crypto import Keyring
from app.db import Database
from app.db import UTCDateTime
from app.db import aware_utc
from app.models import Shop
from app.models import TrackingHit
from app.models import listed_for_erasure
from app.tracking import agents
from app.tracking.tokens import TrackingLink

OPEN = "open"
CLICK = "click"
_COLUMNS = ["shop_id", "kind", "message_id", "token", "agent", "machine", "client_address", "occurred_at"]


def suppression_digests(keyring: Keyring, link: TrackingLink) -> list[str]:
    """The keyed hashes under which the link's identifiers would be on the erasure list (every key held)."""
    digests: list[str] = []
    for kind, value in (("email", link.email), ("phone", link.phone)):
        if value:
            digests += keyring.digests(SUPPRESSION_PURPOSE, f"{kind}:{value}")
    return digests


def record_hit(
    db: Database,
    keyring: Keyring,
    link: TrackingLink,
    token: str,
    *,
    kind: str,
    user_agent: str | None,
    client_address: str | None,
    now: datetime,
) -> bool:
    """Insert the hit in one short transaction; True when it was recorded. Database errors propagate (the
    caller answers anyway)."""
    agent, machine = agents.classify(user_agent, client_address)
    address = (client_address or "")[:64] or None
    digests = suppression_digests(keyring, link)
    bind = db.sessionmaker.kw.get("bind")
    if db.dialect == "postgresql" and isinstance(bind, sa.Engine):
        parameters = _text_parameters(
            kind, link.message_id, token, agent, machine, address, now, link.shop_id, digests
        )
        return _fast_insert(bind, parameters)
    row = sa.select(
        Shop.id,
        sa.literal(kind, sa.String()),
        sa.literal(link.message_id, sa.String()),
        sa.literal(token, sa.Text()),
        sa.literal(agent, sa.String()),
        sa.literal(machine, sa.Boolean()),
        sa.literal(address, sa.String()),
        sa.literal(now, UTCDateTime()),
    ).where(Shop.id == link.shop_id, Shop.uninstalled_at.is_(None))
    if digests:
        row = row.where(~sa.exists().where(listed_for_erasure(Shop.id, digests)))
    statement = sa.insert(TrackingHit).from_select(_COLUMNS, row)
    with db.sessionmaker() as session, session.begin():
        if db.dialect == "postgresql":
            # Asynchronous commit for this transaction only: see the module's docstring for what it risks.
            session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        result = session.execute(statement)
        return bool(result.rowcount)


# PostgreSQL in production: the same statement as above in ONE round trip, on a connection of its own per
# process and thread (no pool checkout, no pre-ping, no BEGIN/COMMIT: the statement is its own transaction
# in autocommit mode, and ``set_config(…, true)`` makes that transaction's commit asynchronous), prepared
# once per connection and run through libpq itself with its parameters already text: psycopg's cursor
# adapts each value in Python, which cost more CPU than the rest of the request (docs/performance.md,
# "Open pixel"). Tests bound to a rolled-back connection take the portable path above.
_FAST_INSERT = b"""
INSERT INTO tracking_hits
    (shop_id, kind, message_id, token, agent, machine, client_address, occurred_at)
SELECT s.id, $1, $2, $3, $4, $5, $6, $7
FROM shops AS s, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
WHERE s.id = $8 AND s.uninstalled_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM suppressions AS p  -- as models.listed_for_erasure: by shop, every kind, and digest
    WHERE p.shop_id = s.id AND p.kind IN ('email', 'phone') AND p.digest = ANY($9::text[])
  )
"""
_STATEMENT = b"popsync_record_hit"
_INVALID_SQL_STATEMENT_NAME = b"26000"  # "prepared statement … does not exist"
_local = threading.local()


def _fast_insert(engine: sa.Engine, parameters: list[bytes | None]) -> bool:
    for attempt in (1, 2):
        pgconn = _connection(engine)
        try:
            result = pgconn.exec_prepared(_STATEMENT, parameters)
        except psycopg.OperationalError:  # libpq could not even send it
            result = None
        if result is not None and result.status == pq.ExecStatus.COMMAND_OK:
            return bool(result.command_tuples)
        if result is not None and pgconn.status == pq.ConnStatus.OK and not _statement_gone(result):
            raise _failure(result)  # the statement failed; the connection is fine
        # A connection the server closed (a restart, an idle timeout), or one that lost its prepared
        # statement (a pooler in between, a DEALLOCATE): drop it, try once on a new one.
        close_fast_connection()
        if attempt == 2:
            raise psycopg.OperationalError("the connection was lost" if result is None else _message(result))
    return False


def _failure(result: pq.abc.PGresult) -> psycopg.Error:
    """The error psycopg would have raised for the result (its class names it in the log line)."""
    code = result.error_field(pq.DiagnosticField.SQLSTATE)
    try:
        error_class = psycopg.errors.lookup(code.decode("ascii")) if code else psycopg.DatabaseError
    except KeyError:
        error_class = psycopg.DatabaseError
    return error_class(_message(result))


def _statement_gone(result: pq.abc.PGresult) -> bool:
    return result.error_field(pq.DiagnosticField.SQLSTATE) == _INVALID_SQL_STATEMENT_NAME


def _text_parameters(
    kind: str,
    message_id: str,
    token: str,
    agent: str,
    machine: bool,
    address: str | None,
    now: datetime,
    shop_id: int,
    digests: list[str],
) -> list[bytes | None]:
    """The statement's parameters ($1 … $9) in PostgreSQL's text format. libpq passes them as C strings,
    so a NUL would cut one short: refused instead, as psycopg's own adaptation refuses it."""
    parameters = [
        kind.encode(),
        message_id.encode(),
        token.encode(),
        agent.encode(),
        b"t" if machine else b"f",
        address.encode() if address is not None else None,
        aware_utc(now).isoformat().encode(),  # a naive one refused, as UTCDateTime refuses it
        str(shop_id).encode(),
        _text_array(digests).encode(),
    ]
    if any(b"\x00" in parameter for parameter in parameters if parameter is not None):
        raise psycopg.DataError("a NUL byte in a tracking hit's value")
    return parameters


def _text_array(items: list[str]) -> str:
    """A PostgreSQL array literal of text items (each quoted, so that any character is safe)."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def _message(result: pq.abc.PGresult) -> str:
    return (result.error_message or b"").decode("utf-8", "replace").strip() or result.status.name


def _connection(engine: sa.Engine) -> pq.abc.PGconn:
    key = (os.getpid(), engine.url)
    if getattr(_local, "key", None) != key or _local.__dict__.get("connection") is None:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        # UTF-8 whatever the server's or the environment's default: the parameters are encoded here.
        connection = psycopg.connect(url, autocommit=True, connect_timeout=5, client_encoding="utf8")
        try:
            prepared = connection.pgconn.prepare(_STATEMENT, _FAST_INSERT)
            if prepared.status != pq.ExecStatus.COMMAND_OK:
                raise psycopg.OperationalError(_message(prepared))
        except BaseException:
            connection.close()
            raise
        _local.connection = connection
        _local.key = key
    return _local.connection.pgconn


def close_fast_connection() -> None:
    """Close this thread's fast-path connection, if it has one (shutdown, tests dropping a database)."""
    connection = _local.__dict__.pop("connection", None)
    _local.__dict__.pop("key", None)
    if connection is not None:
        connection.close()
