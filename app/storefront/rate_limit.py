"""Storefront rate limits: fixed windows counted exactly across every process.

The default ``DatabaseRateLimiter`` keeps one row per key and window in ``rate_limit_counters`` and counts
with ``INSERT … ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 RETURNING count``: the
database adds under the row's lock, so N processes allowed "20 a minute" let exactly 20 through, where
per-process counters would let 20 times N. Anything with the ``RateLimiter`` interface can replace it (a Redis
``INCR`` + ``EXPIRE`` per key and window does the same with no database writes; see docs/storefront.md,
"Rate limits").

The client address comes from ``client_address``: the socket peer when ``PROXY_COUNT`` is 0, else the
``X-Forwarded-For`` entry that many hops from the right (werkzeug's ProxyFix, applied in ``create_app``),
never further left: entries a shopper's browser sent itself are not trusted.
"""

from __future__ import annotations

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
from app.db import get_database
from app.db import upsert
from app.db import utcnow
from app.models import RateLimitCounter

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


class DatabaseRateLimiter:
    """Fixed-window counters in the app's database (PostgreSQL, or SQLite ≥ 3.35 for RETURNING)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def hit(self, limits: Sequence[Limit], now: datetime | None = None) -> Verdict:
        now = now or utcnow()
        active = [limit for limit in limits if limit.rate.enabled]
        if not active:
            return Verdict(allowed=True)
        new_window = False
        with self.database.write_transaction() as session:
            for limit in active:
                start = window_start(now, limit.rate.period)
                statement = (
                    upsert(session, RateLimitCounter)
                    .values(key=limit.key[:_KEY_MAX_LENGTH], window_start=start, count=1)
                    .on_conflict_do_update(
                        index_elements=["key", "window_start"],
                        set_={"count": RateLimitCounter.count + 1},
                    )
                    .returning(RateLimitCounter.count)
                )
                counted = session.execute(statement).scalar_one()
                new_window = new_window or counted == 1
                if counted > limit.rate.limit:
                    ends = start + timedelta(seconds=limit.rate.period)
                    retry_after = max(1, math.ceil((ends - now).total_seconds()))
                    return Verdict(allowed=False, retry_after=retry_after, refused_by=limit.key)
            if new_window and random.randrange(_CLEANUP_ONE_IN) == 0:  # noqa: S311 - not a secret
                session.execute(
                    sa.delete(RateLimitCounter).where(RateLimitCounter.window_start < now - _LONGEST_PERIOD)
                )
        return Verdict(allowed=True)


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
