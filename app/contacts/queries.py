"""Reading the contact list: search, channel filter and keyset pagination, always scoped to one shop."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.orm import Session

from app.contacts.normalize import FieldError
from app.db import Database
from app.enums import EventKind
from app.models import Contact
from app.models import ContactEvent

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
_PHONE_QUERY = re.compile(r"^[\d\s()+.-]+$")


@dataclass(frozen=True)
class Page:
    contacts: list[Contact]
    next_cursor: str | None


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _phone_digits(needle: str) -> str | None:
    """The digits a phone-like ``q`` looks for in the phone (``+1 (415) 555`` -> ``1415555``)."""
    digits = re.sub(r"\D", "", needle)
    return digits if digits and _PHONE_QUERY.match(needle) else None


def search_condition(q: str, contact: Any = Contact) -> sa.ColumnElement[bool]:
    """``q`` matches part of the first or last name or the email (any case), or the digits of the phone.

    ``contact`` is the entity the condition is on: ``Contact``, or an alias of a subquery of contacts."""
    needle = q.strip().lower()
    pattern = _like_pattern(needle)
    conditions: list[sa.ColumnElement[bool]] = [
        sa.func.lower(contact.first_name).like(pattern, escape="\\"),
        sa.func.lower(contact.last_name).like(pattern, escape="\\"),
        contact.email.like(pattern, escape="\\"),
    ]
    digits = _phone_digits(needle)
    if digits:
        conditions.append(contact.phone.like(f"%{digits}%"))
    return sa.or_(*conditions)


# The search text the trigram indexes of migration 0010 hold: the expression must be the index's own, word
# for word, for PostgreSQL to use the index. Every contact ``search_condition`` matches holds the needle
# (or the phone digits) somewhere in this text, so a LIKE on it is a prefilter and the exact condition
# stays as the recheck: results are the same with the index or without it.
PG_SEARCH_TEXT = (
    "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '')"
    " || ' ' || coalesce(phone, ''))"
)
# A word of at least three letters or digits: pg_trgm takes its trigrams from such words only; without
# one, the index would hand back every row.
_TRIGRAM_WORD = re.compile(r"[^\W_]{3}")
# SQLite's FTS5 trigram table of migration 0010 (rowid = the contact's id), kept in step by triggers.
_FTS = sa.table("contacts_search", sa.column("rowid", sa.Integer()), sa.column("search", sa.Text()))
# How many of the most recently updated contacts a search reads first, in the list's own order.
RECENT_WINDOW = 5000


def search_prefilter(q: str, dialect: str) -> sa.ColumnElement[bool] | None:
    """A condition the trigram index answers, true for every contact ``search_condition(q)`` matches; None
    when the index cannot help (a needle under three characters, or with LIKE's own characters on SQLite,
    whose trigram LIKE has no ESCAPE)."""
    needle = q.strip().lower()
    needles = [needle]
    digits = _phone_digits(needle)
    if digits and digits != needle:
        needles.append(digits)
    if dialect == "postgresql":
        if not all(_TRIGRAM_WORD.search(n) for n in needles):
            return None
        return sa.or_(
            *(
                sa.text(f"{PG_SEARCH_TEXT} LIKE lower(:search_{i})").bindparams(
                    sa.bindparam(f"search_{i}", _like_pattern(n))
                )
                for i, n in enumerate(needles)
            )
        )
    if dialect == "sqlite":
        if any(len(n) < 3 or any(ch in n for ch in "%_\\") for n in needles):
            return None
        return sa.or_(
            *(Contact.id.in_(sa.select(_FTS.c.rowid).where(_FTS.c.search.like(f"%{n}%"))) for n in needles)
        )
    return None


def encode_cursor(contact: Contact) -> str:
    raw = json.dumps([contact.updated_at.isoformat(), contact.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, contact_id = json.loads(raw)
        moment = datetime.fromisoformat(updated_at)
        if moment.tzinfo is None or not isinstance(contact_id, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise FieldError("cursor", "is not a cursor this API gave out") from None
    return moment, contact_id


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise FieldError("limit", "must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise FieldError("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def filtered(
    shop_id: int,
    q: str | None = None,
    channel: str | None = None,
    segment: sa.ColumnElement[bool] | None = None,
) -> sa.Select[tuple[Contact]]:
    """``segment`` is a compiled segment (app/contacts/segments.py), combined with the search and channel."""
    statement = sa.select(Contact).where(Contact.shop_id == shop_id)
    if segment is not None:
        statement = statement.where(segment)
    if q and q.strip():
        statement = statement.where(search_condition(q))
    if channel:
        if channel == "email":
            statement = statement.where(Contact.email.is_not(None))
        elif channel == "sms":
            statement = statement.where(Contact.phone.is_not(None))
        else:
            raise FieldError("channel", "must be email or sms")
    return statement


def list_contacts(
    session: Session,
    shop_id: int,
    *,
    q: str | None = None,
    channel: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    segment: sa.ColumnElement[bool] | None = None,
) -> Page:
    """A page of the shop's contacts, most recently updated first, and the cursor of the next page.

    A search runs in up to two steps, because no single plan is fast for both kinds of needle. First the
    ``RECENT_WINDOW`` most recently updated contacts are read in the list's order (the (shop_id,
    updated_at, id) index) and filtered: a common needle ("gmail", "an") fills the page there. Only when
    it does not, the whole list is searched through the trigram index, which is fast exactly when matches
    are few. Both steps return the list's first matches in order, so the page is the same either way."""
    statement = filtered(shop_id, None, channel, segment)
    if cursor:
        updated_at, contact_id = decode_cursor(cursor)
        statement = statement.where(
            sa.or_(
                Contact.updated_at < updated_at,
                sa.and_(Contact.updated_at == updated_at, Contact.id < contact_id),
            )
        )
    newest_first = (Contact.updated_at.desc(), Contact.id.desc())
    if q and q.strip():
        recent = sa.orm.aliased(Contact, statement.order_by(*newest_first).limit(RECENT_WINDOW).subquery())
        rows = list(
            session.scalars(
                sa.select(recent)
                .where(search_condition(q, recent))
                .order_by(recent.updated_at.desc(), recent.id.desc())
                .limit(limit + 1)
            )
        )
        if len(rows) <= limit:
            statement = statement.where(search_condition(q))
            prefilter = search_prefilter(q, session.get_bind().dialect.name)
            if prefilter is not None:
                statement = statement.where(prefilter)
            rows = list(session.scalars(statement.order_by(*newest_first).limit(limit + 1)))
    else:
        rows = list(session.scalars(statement.order_by(*newest_first).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)


# Contacts per keyset page of an export: big enough that the query per page costs little, small enough
# that a page's rows (a few MB) are all an export ever holds.
EXPORT_PAGE = 5000
# The export's columns: the id (the keyset), then the CSV columns in order. Tags come as their JSON text:
# decoding JSONB through the driver was two thirds of an export's read time, and most lists are empty.
EXPORT_COLUMNS = (
    Contact.id,
    Contact.email,
    Contact.phone,
    Contact.first_name,
    Contact.last_name,
    Contact.birthday,
    Contact.gender,
    Contact.country,
    Contact.email_consent,
    Contact.sms_consent,
    sa.cast(Contact.tags, sa.Text()).label("tags"),
)


def export_rows(db: Database, statement: sa.Select[Any], page: int = EXPORT_PAGE) -> Iterator[sa.Row[Any]]:
    """The contacts ``statement`` selects (the list's filters: ``filtered``, ``export_statement``) as rows of
    ``EXPORT_COLUMNS``, a keyset page at a time by id, as plain Core rows (no ORM objects, no mappings):
    constant memory, and a short read transaction per page rather than one held for the whole download.
    ``csvio.export_lines`` writes them.

    On PostgreSQL the next page is read on another thread while the caller writes this one (the export
    waited for the database half of its time); at most two pages are in memory."""
    statement = statement.with_only_columns(*EXPORT_COLUMNS)

    def read(after: int) -> list[sa.Row[Any]]:
        with db.sessionmaker() as session:
            return list(
                session.connection()
                .execute(statement.where(Contact.id > after).order_by(Contact.id).limit(page))
                .all()
            )

    if not db.parallel_transactions:
        last = 0
        while True:
            rows = read(last)
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1][0]
            del rows  # one page in memory at a time: drop this one before the next is read
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="popsync-export") as reader:
        next_page: Future[list[sa.Row[Any]]] | None = reader.submit(read, 0)
        while next_page is not None:
            rows = next_page.result()
            next_page = reader.submit(read, rows[-1][0]) if len(rows) == page else None
            yield from rows
            del rows


def get_contact(session: Session, shop_id: int, contact_id: int) -> Contact | None:
    return session.scalar(sa.select(Contact).where(Contact.shop_id == shop_id, Contact.id == contact_id))


def contact_events(session: Session, contact: Contact, limit: int = 200) -> list[ContactEvent]:
    """The contact's ``limit`` newest events, newest first, and after them, when they are older, the
    consent evidence: the latest submission that ticked each channel's box. Years of opens and clicks
    must not push the proof of consent out of the contact's detail."""
    mine = (ContactEvent.shop_id == contact.shop_id, ContactEvent.contact_id == contact.id)
    newest_first = (ContactEvent.occurred_at.desc(), ContactEvent.id.desc())
    events = list(session.scalars(sa.select(ContactEvent).where(*mine).order_by(*newest_first).limit(limit)))
    if len(events) < limit:
        return events  # every event is there, the evidence with them
    shown = {event.id for event in events}
    for channel in ("email", "sms"):
        proof = session.scalars(
            sa.select(ContactEvent)
            .where(
                *mine,
                ContactEvent.kind == EventKind.SUBMITTED.value,
                ContactEvent.data[f"{channel}_consent"].as_boolean().is_(True),
            )
            .order_by(*newest_first)
            .limit(1)
        ).first()
        if proof is not None and proof.id not in shown:
            events.append(proof)
            shown.add(proof.id)
    return sorted(events, key=lambda event: (event.occurred_at, event.id), reverse=True)
