"""Segments: saved filters of a shop's contacts, a list of conditions matched ``all`` or ``any``.

Two halves:

- ``validate_segment`` (pure): turns a request body into a ``SegmentSpec`` or raises ``ValidationError``
  whose keys name the bad part, e.g. ``conditions[2].value``.
- ``compile_segment``: the spec as one SQLAlchemy condition over ``Contact`` (never SQL text), to combine
  with the list's search and channel filter, the export and the count.

Conditions (``field`` / ``op`` / ``value``):

===================  =============================  ================================================
field                ops                            value
===================  =============================  ================================================
email, phone         present, absent                null (or left out)
email_consent,       is, is_not                     subscribed | unsubscribed | not_subscribed | pending
sms_consent
country              in, not_in                     a list of ISO 3166-1 alpha-2 codes
gender               is, is_not                     female | male | other | unspecified
birthday_month       is                             1-12
created_at,          within_days, not_within_days   whole days, 1-36500 (not_within: longer ago)
updated_at
source               is, is_not                     form | open | click | import | platform | merchant
form                 submitted, not_submitted       a form id (submitted events' evidence ``form_id``)
tag                  has, has_not                   a tag
opened, clicked      within_days, not_within_days   whole days: an opened/clicked event in that time
sync_status          is, is_not                     pending | synced | conflict | failed | local
===================  =============================  ================================================

``is_not`` and ``not_in`` include contacts with no value (a contact without a gender "is not female").
A segment without conditions holds every contact, whether it matches all or any.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.contacts.normalize import GENDERS
from app.contacts.normalize import FieldError
from app.contacts.normalize import ValidationError
from app.contacts.normalize import clean_text
from app.contacts.normalize import normalize_country
from app.enums import Consent
from app.enums import EventKind
from app.enums import Source
from app.enums import SyncStatus
from app.models import Contact
from app.models import ContactEvent
from app.models import Segment

MATCHES = ("all", "any")
MAX_CONDITIONS = 50
MAX_COUNTRIES = 300
MAX_DAYS = 36500
NAME_MAX_LENGTH = 255

# field -> (ops, kind of value)
_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "email": (("present", "absent"), "none"),
    "phone": (("present", "absent"), "none"),
    "email_consent": (("is", "is_not"), "consent"),
    "sms_consent": (("is", "is_not"), "consent"),
    "country": (("in", "not_in"), "countries"),
    "gender": (("is", "is_not"), "gender"),
    "birthday_month": (("is",), "month"),
    "created_at": (("within_days", "not_within_days"), "days"),
    "updated_at": (("within_days", "not_within_days"), "days"),
    "source": (("is", "is_not"), "source"),
    "form": (("submitted", "not_submitted"), "form"),
    "tag": (("has", "has_not"), "tag"),
    "opened": (("within_days", "not_within_days"), "days"),
    "clicked": (("within_days", "not_within_days"), "days"),
    "sync_status": (("is", "is_not"), "sync_status"),
}
FIELDS = tuple(_FIELDS)
_CHOICES: dict[str, tuple[str, ...]] = {
    "consent": tuple(c.value for c in Consent),
    "gender": GENDERS,
    # Contacts are created by these; the unsubscribe link only ever changes consent.
    "source": tuple(s.value for s in Source if s is not Source.UNSUBSCRIBE_LINK),
    "sync_status": tuple(s.value for s in SyncStatus),
}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any = None

    def as_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "op": self.op, "value": value}


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    match: str
    conditions: tuple[Condition, ...]


def spec_of(segment: Segment) -> SegmentSpec:
    """A stored segment as a spec (its conditions were validated before they were stored)."""
    return SegmentSpec(
        segment.name, segment.match, tuple(_condition_from_json(c) for c in segment.conditions or [])
    )


def _condition_from_json(raw: Mapping[str, Any]) -> Condition:
    value = raw.get("value")
    return Condition(raw["field"], raw["op"], tuple(value) if isinstance(value, list) else value)


# --- validation (pure) ---------------------------------------------------------------------------------


def validate_segment(body: Mapping[str, Any], current: SegmentSpec | None = None) -> SegmentSpec:
    """A new segment (``current`` None: name required, match defaults to all) or a change to one (only the
    keys given change; ``conditions`` replaces the whole list). Every bad part is reported at once."""
    errors: dict[str, str] = {}
    name = current.name if current else None
    if "name" in body or current is None:
        try:
            name = clean_text(body.get("name"), "name", NAME_MAX_LENGTH)
            if name is None:
                raise FieldError("name", "is required")
        except FieldError as error:
            errors[error.field] = error.message
    match = current.match if current else "all"
    if "match" in body:
        match = body["match"]
        if match not in MATCHES:
            errors["match"] = "must be all or any"
    conditions = current.conditions if current else ()
    if "conditions" in body:
        try:
            conditions = validate_conditions(body["conditions"])
        except ValidationError as error:
            errors.update(error.errors)
    if errors:
        raise ValidationError(errors)
    assert name is not None
    return SegmentSpec(name, match, conditions)


def validate_conditions(raw: Any) -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        raise ValidationError({"conditions": "must be a list of {field, op, value} objects"})
    if len(raw) > MAX_CONDITIONS:
        raise ValidationError({"conditions": f"must hold at most {MAX_CONDITIONS} conditions"})
    errors: dict[str, str] = {}
    conditions: list[Condition] = []
    for index, item in enumerate(raw):
        try:
            conditions.append(validate_condition(item, f"conditions[{index}]"))
        except FieldError as error:
            errors[error.field] = error.message
    if errors:
        raise ValidationError(errors)
    return tuple(conditions)


def validate_condition(raw: Any, where: str) -> Condition:
    """One condition; FieldError naming ``<where>.field``, ``<where>.op`` or ``<where>.value``."""
    if not isinstance(raw, Mapping):
        raise FieldError(where, "must be an object with field, op and value")
    field = raw.get("field")
    if field not in _FIELDS:
        raise FieldError(f"{where}.field", f"must be one of {', '.join(FIELDS)}")
    ops, kind = _FIELDS[field]
    op = raw.get("op")
    if op not in ops:
        raise FieldError(f"{where}.op", f"must be {' or '.join(ops)} for {field}")
    return Condition(field, op, _value(kind, raw.get("value"), f"{where}.value"))


def _value(kind: str, value: Any, where: str) -> Any:
    if kind == "none":
        if value is not None:
            raise FieldError(where, "must be null (present and absent take no value)")
        return None
    if kind in _CHOICES:
        if value not in _CHOICES[kind]:
            raise FieldError(where, f"must be one of {', '.join(_CHOICES[kind])}")
        return value
    if kind == "countries":
        if not isinstance(value, list) or not value:
            raise FieldError(where, "must be a non-empty list of ISO 3166-1 alpha-2 country codes")
        if len(value) > MAX_COUNTRIES:
            raise FieldError(where, f"must hold at most {MAX_COUNTRIES} countries")
        codes = [normalize_country(code, f"{where}[{i}]") for i, code in enumerate(value)]
        if any(code is None for code in codes):
            raise FieldError(where, "must not hold empty country codes")
        return tuple(dict.fromkeys(code for code in codes if code))
    if kind == "month":
        if not _is_int(value) or not 1 <= value <= 12:
            raise FieldError(where, "must be a month number, 1-12")
        return value
    if kind == "days":
        if not _is_int(value) or not 1 <= value <= MAX_DAYS:
            raise FieldError(where, f"must be a whole number of days, 1-{MAX_DAYS}")
        return value
    if kind == "form":
        # The forms API gives ids as strings ("7"); accept those and numbers alike.
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
            value = int(value.strip())
        if not _is_int(value) or not 0 < value < 2**63:
            raise FieldError(where, "must be a form id")
        return value
    if kind == "tag":
        tag = clean_text(value, where) if value is None or isinstance(value, str) else None
        if tag is None:
            raise FieldError(where, "must be a non-empty tag")
        return tag
    raise AssertionError(kind)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- compiling to SQL ----------------------------------------------------------------------------------


class has_tag(FunctionElement[bool]):
    """``has_tag(contacts.tags, :tag)``: the JSON list of tags holds the tag. Each database spells it its
    own way (below); the rest of the segment is the same SQLAlchemy on both."""

    type = sa.Boolean()
    inherit_cache = True
    name = "has_tag"


@compiles(has_tag, "postgresql")
def _has_tag_postgresql(element: has_tag, compiler: SQLCompiler, **kw: Any) -> str:
    # JSONB containment: tags @> '["vip"]'.
    column, tag = list(element.clauses)
    return compiler.process(column.op("@>", return_type=sa.Boolean)(sa.func.jsonb_build_array(tag)), **kw)


@compiles(has_tag)
def _has_tag_sqlite(element: has_tag, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps JSON as text: EXISTS (SELECT 1 FROM json_each(tags) WHERE value = :tag).
    column, tag = list(element.clauses)
    each = sa.func.json_each(column).table_valued("value")
    return compiler.process(
        sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag).exists(), **kw
    )


def compile_segment(spec: SegmentSpec, now: datetime) -> sa.ColumnElement[bool]:
    """The segment as a condition on ``Contact`` (the caller scopes it to the shop). ``now`` anchors the
    "within N days" conditions."""
    clauses = [compile_condition(condition, now) for condition in spec.conditions]
    if not clauses:
        return sa.true()
    return sa.and_(*clauses) if spec.match == "all" else sa.or_(*clauses)


def compile_condition(condition: Condition, now: datetime) -> sa.ColumnElement[bool]:
    field, op, value = condition.field, condition.op, condition.value
    negate = op in ("is_not", "not_in", "has_not", "not_submitted", "not_within_days", "absent")
    clause: sa.ColumnElement[bool]
    if field in ("email", "phone"):
        clause = getattr(Contact, field).is_not(None)
    elif field in ("email_consent", "sms_consent", "source", "sync_status", "gender"):
        clause = getattr(Contact, field) == value
    elif field == "country":
        clause = Contact.country.in_(list(value))
    elif field == "birthday_month":
        clause = sa.extract("month", Contact.birthday) == value
    elif field in ("created_at", "updated_at"):
        clause = getattr(Contact, field) >= now - timedelta(days=value)
    elif field == "tag":
        clause = has_tag(Contact.tags, value)
    elif field == "form":
        clause = _has_event(EventKind.SUBMITTED, ContactEvent.data["form_id"].as_string() == str(value))
    elif field in ("opened", "clicked"):
        kind = EventKind.OPENED if field == "opened" else EventKind.CLICKED
        clause = _has_event(kind, ContactEvent.occurred_at >= now - timedelta(days=value))
    else:
        raise AssertionError(field)
    if not negate:
        return clause
    # NOT over a nullable column would drop the contacts without a value (NULL is neither); they belong
    # to "is not" / "not in": coalesce the comparison to false first.
    return sa.not_(sa.func.coalesce(clause, sa.false()))


def _has_event(kind: EventKind, condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return (
        sa.select(ContactEvent.id)
        .where(
            ContactEvent.contact_id == Contact.id,
            ContactEvent.shop_id == Contact.shop_id,
            ContactEvent.kind == kind.value,
            condition,
        )
        .exists()
    )


# --- reading segments ----------------------------------------------------------------------------------


def find_segment(session: Session, shop_id: int, segment_id: int) -> Segment | None:
    return session.scalar(sa.select(Segment).where(Segment.shop_id == shop_id, Segment.id == segment_id))


def segment_filter(
    session: Session, shop_id: int, segment_id: int, now: datetime
) -> sa.ColumnElement[bool] | None:
    """The condition of the shop's segment ``segment_id``; None when the shop has no such segment."""
    segment = find_segment(session, shop_id, segment_id)
    return None if segment is None else compile_segment(spec_of(segment), now)


def count_contacts(session: Session, shop_id: int, condition: sa.ColumnElement[bool]) -> int:
    statement = sa.select(sa.func.count()).select_from(Contact).where(Contact.shop_id == shop_id, condition)
    return int(session.scalar(statement) or 0)


def parse_segment_id(value: str | None) -> int | None:
    """The list and export's ``segment`` parameter: None when absent; FieldError when not an id."""
    if value is None or value == "":
        return None
    text = value.strip()
    if not text.isdigit() or len(text) >= 19:
        raise FieldError("segment", "must be a segment id")
    return int(text)


def segment_json(segment: Segment, count: int) -> dict[str, Any]:
    return {
        "id": segment.id,
        "name": segment.name,
        "match": segment.match,
        "conditions": [_condition_from_json(c).as_json() for c in segment.conditions or []],
        "count": count,
        "created_at": segment.created_at.isoformat(),
        "updated_at": segment.updated_at.isoformat(),
    }


def conditions_json(conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    return [condition.as_json() for condition in conditions]
