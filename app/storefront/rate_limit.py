"""Storefront rate limits: fixed windows counted exactly across every process.

The default ``DatabaseRateLimiter`` keeps one row per key and window in ``rate_limit_counters`` and counts
with ``INSERT … ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 RETURNING count``: the
database adds under the row's lock, so N processes allowed "20 a minute" let exactly 20 through, where
per-process counters would let 20 times N. On PostgreSQL every limit of a request is counted by one
autocommitted statement (``_chained_counts``), the cheapest write a submission makes. Anything with the
``RateLimiter`` interface can replace it (a Redis ``INCR`` + ``EXPIRE`` per key and window does the same
with no database writes; see docs/storefront.md, "Rate limits").

The client address comes from ``client_address``: the socket peer when ``PROXY_COUNT`` is 0, else the
``X-Forwarded-For`` entry that many hops from the right (werkzeug's ProxyFix, applied in ``create_app``),
never further left: entries a shopper's browser sent itself are not trusted.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Protocol

import sqlalchemy as sa
from flask import current_app
from flask import request

from app.config import RateLimit
from app.db import Database
from app.db import PerDialect
from app.db import get_database
from app.db import upsert_for
from app.db import utcnow
from app.models import RateLimitCounter
from app.prepared import run

# Windows are at most a day long; a row whose window started before this is over and can go.
_LONGEST_PERIOD = timedelta(days=1)
# About one new window in this many also deletes the windows that are over: cheap, and the table stays small.
_CLEANUP_ONE_IN = 50
_KEY_MAX_LENGTH = 255


@dataclass(frozen=True)
class Limit:
    """One counted limit: ``key`` names what is limited and who is counted (``submissions:client:<ip>``)."""

    key: str
    rate: RateLimit


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    # Seconds until the window that refused the request ends (0 when allowed).
    retry_after: int = 0
    # The key of the limit that refused it.
    refused_by: str | None = None


class RateLimiter(Protocol):
    def hit(self, limits: Sequence[Limit], now: datetime | None = None) -> Verdict:
        """Count one request against ``limits`` in order; the first one over its limit refuses it (the later
        ones are not counted, so a client over its own limit does not use up the shop's)."""
        ...


def window_start(now: datetime, period: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period, UTC)


def _build_count(dialect: str) -> sa.Insert:
    """Add one to a key's window, creating its row; the count after the addition."""
    return (
        upsert_for(dialect, _COUNTERS)
        .values(
            key=sa.bindparam("key", type_=_COUNTERS.c.key.type),
            window_start=sa.bindparam("window_start", type_=_COUNTERS.c.window_start.type),
            count=1,
        )
        .on_conflict_do_update(
            index_elements=[_COUNTERS.c.key, _COUNTERS.c.window_start],
            set_={"count": _COUNTERS.c.count + 1},
        )
        .returning(_COUNTERS.c.count)
    )


_COUNTERS: sa.Table = RateLimitCounter.__table__  # type: ignore[assignment]
_count = PerDialect(_build_count)
_CLEANUP = sa.delete(_COUNTERS).where(
    _COUNTERS.c.window_start < sa.bindparam("before", type_=_COUNTERS.c.window_start.type)
)


def _clean_up_now_and_then(connection: sa.Connection, counts: Sequence[int | None], now: datetime) -> None:
    """About one request in ``_CLEANUP_ONE_IN`` that opens a new window deletes the windows that are over."""
    if 1 in counts and random.randrange(_CLEANUP_ONE_IN) == 0:  # noqa: S311 - not a secret
        connection.execute(_CLEANUP, {"before": now - _LONGEST_PERIOD})


class DatabaseRateLimiter:
    """Fixed-window counters in the app's database (PostgreSQL, or SQLite ≥ 3.35 for RETURNING)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def hit(self, limits: Sequence[Limit], now: datetime | None = None) -> Verdict:
        now = now or utcnow()
        active = [limit for limit in limits if limit.rate.enabled]
        if not active:
            return Verdict(allowed=True)
        starts = [window_start(now, limit.rate.period) for limit in active]
        keys = [limit.key[:_KEY_MAX_LENGTH] for limit in active]
        # One statement cannot add to the same row twice (ON CONFLICT DO UPDATE refuses): a request that
        # counts one key's window twice takes the transaction's way.
        distinct = len(set(zip(keys, starts, strict=True))) == len(keys)
        autocommit = self.database.autocommit() if distinct else None
        if autocommit is None:
            counts = self._count_in_transaction(active, keys, starts, now)
        else:
            with autocommit as connection:
                counts = self._count_in_one_statement(connection, active, keys, starts, now)
        for limit, start, counted in zip(active, starts, counts, strict=True):
            if counted is None:
                break  # an earlier limit refused it; this one was not counted
            if counted > limit.rate.limit:
                ends = start + timedelta(seconds=limit.rate.period)
                retry_after = max(1, math.ceil((ends - now).total_seconds()))
                return Verdict(allowed=False, retry_after=retry_after, refused_by=limit.key)
        return Verdict(allowed=True)

    def _count_in_one_statement(
        self,
        connection: sa.Connection,
        limits: list[Limit],
        keys: list[str],
        starts: list[datetime],
        now: datetime,
    ) -> list[int | None]:
        """PostgreSQL: every limit counted in one autocommitted statement (``_chained_counts``)."""
        params: dict[str, object] = {}
        for index, (limit, key, start) in enumerate(zip(limits, keys, starts, strict=True)):
            params |= {f"key{index}": key, f"start{index}": start, f"limit{index}": limit.rate.limit}
        counts = list(run(connection, _chained_counts(len(limits)), params).one())
        _clean_up_now_and_then(connection, counts, now)
        return counts

    def _count_in_transaction(
        self, limits: list[Limit], keys: list[str], starts: list[datetime], now: datetime
    ) -> list[int | None]:
        """SQLite (and tests bound to one connection): one statement per limit in a short transaction."""
        counts: list[int | None] = [None] * len(limits)
        with self.database.write_transaction() as session:
            connection = session.connection()
            for index, (limit, key, start) in enumerate(zip(limits, keys, starts, strict=True)):
                counted = connection.execute(
                    _count(connection), {"key": key, "window_start": start}
                ).scalar_one()
                counts[index] = counted
                if counted > limit.rate.limit:
                    break
            _clean_up_now_and_then(connection, counts, now)
        return counts


@functools.cache
def _chained_counts(limits: int) -> sa.TextClause:
    """PostgreSQL: count ``limits`` limits in one statement, each only if the one before is within its
    limit (a client over its own limit does not use up the shop's); their counts, NULL where not counted.

    The statement is its own transaction, committed asynchronously (``set_config(…, true)``): a crash of
    the database server may forget the last moments of counts, which lets a few more requests through
    after it, and nothing else; the answer does not wait for the WAL to reach the disk."""
    # Only the steps' numbers are formatted into the text; every value is a bound parameter.
    steps = ["async_commit AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))"]
    for index in range(limits):
        before = f"c{index - 1}"
        source = "async_commit" if index == 0 else f"{before} WHERE {before}.count <= :limit{index - 1}"
        steps.append(
            f"c{index} AS (INSERT INTO rate_limit_counters (key, window_start, count)"  # noqa: S608
            f" SELECT :key{index}, :start{index}, 1 FROM {source}"
            " ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1"
            " RETURNING count)"
        )
    counts = ", ".join(f"(SELECT count FROM c{index})" for index in range(limits))  # noqa: S608
    statement = sa.text(f"WITH {', '.join(steps)} SELECT {counts}")
    return statement.bindparams(
        *(sa.bindparam(f"start{index}", type_=_COUNTERS.c.window_start.type) for index in range(limits))
    )


def get_rate_limiter() -> RateLimiter:
    """The app's limiter (a test or a deployment may put another in ``app.extensions``)."""
    limiter = current_app.extensions.get("popsync.rate_limiter")
    if limiter is None:
        limiter = current_app.extensions["popsync.rate_limiter"] = DatabaseRateLimiter(get_database())
    return limiter


def client_address() -> str:
    """The storefront client's address: the socket peer, or the X-Forwarded-For entry ``PROXY_COUNT`` hops
    from the right (ProxyFix has already put it in ``remote_addr``)."""
    return request.remote_addr or "unknown"


def forwarded_entry(hops: int) -> str | None:
    """The X-Forwarded-For entry ``hops`` from the right (1 is the last one), or None when there are fewer."""
    entries = [
        entry.strip()
        for header in request.headers.getlist("X-Forwarded-For")
        for entry in header.split(",")
        if entry.strip()
    ]
    return entries[-hops] if 0 < hops <= len(entries) else None
