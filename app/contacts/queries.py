"""Reading the contact list: search, channel filter and keyset pagination, always scoped to one shop."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.contacts.normalize import FieldError
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


def search_condition(q: str) -> sa.ColumnElement[bool]:
    """``q`` matches part of the first or last name or the email (any case), or the digits of the phone."""
    needle = q.strip().lower()
    pattern = _like_pattern(needle)
    conditions: list[sa.ColumnElement[bool]] = [
        sa.func.lower(Contact.first_name).like(pattern, escape="\\"),
        sa.func.lower(Contact.last_name).like(pattern, escape="\\"),
        Contact.email.like(pattern, escape="\\"),
    ]
    digits = re.sub(r"\D", "", needle)
    if digits and _PHONE_QUERY.match(needle):
        conditions.append(Contact.phone.like(f"%{digits}%"))
    return sa.or_(*conditions)


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
    """A page of the shop's contacts, most recently updated first, and the cursor of the next page."""
    statement = filtered(shop_id, q, channel, segment)
    if cursor:
        updated_at, contact_id = decode_cursor(cursor)
        statement = statement.where(
            sa.or_(
                Contact.updated_at < updated_at,
                sa.and_(Contact.updated_at == updated_at, Contact.id < contact_id),
            )
        )
    statement = statement.order_by(Contact.updated_at.desc(), Contact.id.desc()).limit(limit + 1)
    rows = list(session.scalars(statement))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)


def get_contact(session: Session, shop_id: int, contact_id: int) -> Contact | None:
    return session.scalar(sa.select(Contact).where(Contact.shop_id == shop_id, Contact.id == contact_id))


def contact_events(session: Session, contact: Contact, limit: int = 200) -> list[ContactEvent]:
    statement = (
        sa.select(ContactEvent)
        .where(ContactEvent.shop_id == contact.shop_id, ContactEvent.contact_id == contact.id)
        .order_by(ContactEvent.occurred_at.desc(), ContactEvent.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))
