"""Views and submissions per form and UTC day, for the admin's conversion figures.

Counting is one ``INSERT … ON CONFLICT (form_id, day) DO UPDATE SET n = n + 1``: the database does the
addition under the row's lock, so concurrent beacons from many processes are counted exactly on both
PostgreSQL and SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from datetime import timedelta
from typing import Any
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import Database
from app.db import PerDialect
from app.db import connection_of
from app.db import upsert_for
from app.db import utcnow
from app.models import FormDailyStat
from app.prepared import run

STATS_DAYS = 30


def count(
    database: Database, form_id: int, what: Literal["views", "submissions"], day: date | None = None
) -> None:
    """Add one view or submission to the form's row for ``day`` (today, UTC, by default)."""
    with database.write_transaction() as session:
        count_in(session, form_id, what, day)


def count_in(
    session: Session, form_id: int, what: Literal["views", "submissions"], day: date | None = None
) -> None:
    """``count`` inside the caller's transaction."""
    connection = connection_of(session)
    run(connection, *count_statement(connection, form_id, what, day))


def count_statement(
    connection: sa.Connection, form_id: int, what: Literal["views", "submissions"], day: date | None = None
) -> tuple[sa.Insert, dict[str, Any]]:
    """The statement that counts one, with its parameters: a submission sends it with its sync's writes."""
    return _COUNT[what](connection), {"form_id": form_id, "day": day or utcnow().date()}


def _build_count(dialect: str, what: str) -> sa.Insert:
    return (
        upsert_for(dialect, _STATS)
        .values(
            form_id=sa.bindparam("form_id", type_=_STATS.c.form_id.type),
            day=sa.bindparam("day", type_=_STATS.c.day.type),
            views=int(what == "views"),
            submissions=int(what == "submissions"),
        )
        .on_conflict_do_update(
            index_elements=[_STATS.c.form_id, _STATS.c.day], set_={what: _STATS.c[what] + 1}
        )
        .inline()  # no RETURNING of the row's id: nobody reads it
    )


_STATS: sa.Table = FormDailyStat.__table__  # type: ignore[assignment]
_COUNT = {what: PerDialect(functools.partial(_build_count, what=what)) for what in ("views", "submissions")}


def recent_stats(
    session: Session, form_ids: Iterable[int], today: date | None = None
) -> dict[int, dict[str, Any]]:
    """Views, submissions and conversion rate (submissions / views) of the last 30 days, per form."""
    ids = list(form_ids)
    today = today or utcnow().date()
    totals = dict.fromkeys(ids, (0, 0))
    if ids:
        rows = session.execute(
            sa.select(
                FormDailyStat.form_id,
                sa.func.coalesce(sa.func.sum(FormDailyStat.views), 0),
                sa.func.coalesce(sa.func.sum(FormDailyStat.submissions), 0),
            )
            .where(FormDailyStat.form_id.in_(ids), FormDailyStat.day > today - timedelta(days=STATS_DAYS))
            .group_by(FormDailyStat.form_id)
        )
        for form_id, views, submissions in rows:
            totals[form_id] = (int(views), int(submissions))
    return {
        form_id: {
            "days": STATS_DAYS,
            "views": views,
            "submissions": submissions,
            "conversion_rate": round(submissions / views, 4) if views else None,
        }
        for form_id, (views, submissions) in totals.items()
    }
