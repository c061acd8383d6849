"""The sync service: every way a contact arrives ends here, in one transaction per sync (or per batch).

    lock the identifiers -> check suppressions -> load candidates -> rules.decide (pure) -> apply
    -> contact event -> outbox row for the platform write -> commit

``sync`` handles one record (a submission, an open, a click); ``sync_batch`` an import chunk, deciding the
records in order with the same rules against candidates loaded in one query, so that a batch gives the
same contacts as its records synced one after another (rule 10).
"""

from __future__ import annotations

import contextlib
import io
import json
import operator
import sys
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask import current_app
from psycopg.copy import Copy
from psycopg.copy import FileWriter
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app import metrics
from app.contacts import rules
from app.contacts.normalize import ValidationError
from app.contacts.rules import Action
from app.contacts.rules import Candidate
from app.contacts.rules import Collected
from app.crypto import Keyring
from app.db import Database
from app.db import PerDialect
from app.db import after_commit
from app.db import aware_utc
from app.db import connection_of
from app.db import identifier_lock_key
from app.db import identifier_locks
from app.db import lock_identifiers
from app.db import upsert_for
from app.db import utcnow
from app.enums import Consent
from app.enums import EventKind
from app.enums import OutboxKind
from app.enums import OutboxStatus
from app.enums import Source
from app.enums import SyncStatus
from app.models import AuditLog
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import Suppression
from app.models import listed_for_erasure
from app.prepared import run
from app.prepared import run_all

SUPPRESSION_PURPOSE = "suppression"
# Above this many identifiers, a sync first asks whether the shop has any suppression at all.
_SUPPRESSION_PROBE_OVER = 8
# COPY pays off from a few rows on; for one submission's contact and event it costs two round trips and its
# own setup where one INSERT each is one round trip.
_COPY_FROM_ROWS = 8
# The fields a platform write carries (rule 9); the display name (rule 7) is never among them.
PLATFORM_FIELDS = (*rules.PROFILE_FIELDS, "email_consent", "sms_consent")
EVENT_KIND_BY_SOURCE = {
    Source.FORM: EventKind.SUBMITTED,
    Source.OPEN: EventKind.OPENED,
    Source.CLICK: EventKind.CLICKED,
    Source.IMPORT: EventKind.IMPORTED,
    Source.PLATFORM: EventKind.MIRRORED,
    Source.MERCHANT: EventKind.EDITED,
}


@dataclass(frozen=True)
class SyncResult:
    action: Action
    reason: str
    contact_id: int | None = None
    changed: tuple[str, ...] = ()


# The contacts table as Core sees it: a batch reads and writes plain rows, not ORM objects (the unit of
# work flushing one object at a time was most of an import's time).
_CONTACTS: sa.Table = Contact.__table__  # type: ignore[assignment]
_EVENTS: sa.Table = ContactEvent.__table__  # type: ignore[assignment]
_COLUMNS = tuple(column.name for column in _CONTACTS.columns)
# The columns a sync may change on a stored contact (_set_values, _mark_for_platform, the link of rule 1):
# a batch's one UPDATE statement writes these for every contact it changed.
_SYNCED_COLUMNS = (
    *rules.PROFILE_FIELDS,
    "email_consent",
    "email_consent_at",
    "email_consent_source",
    "sms_consent",
    "sms_consent_at",
    "sms_consent_source",
    "tags",
    "platform_customer_id",
    "sync_status",
    "pending_fields",
    "pending_tags",
    "updated_at",
)


class _Row:
    """A contact as a batch reads and changes it: the attributes of ``Contact`` without the ORM's
    instrumentation. ``stored`` is what the database holds (None for a contact the batch creates), so
    the batch writes only the rows that changed."""

    id: int
    shop_id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    birthday: date | None
    gender: str | None
    country: str | None
    email_consent: str
    email_consent_at: datetime | None
    email_consent_source: str | None
    sms_consent: str
    sms_consent_at: datetime | None
    sms_consent_source: str | None
    tags: list[str]
    source: str
    platform_customer_id: str | None
    platform_updated_at: datetime | None
    sync_status: str
    sync_detail: str | None
    pending_fields: list[str]
    pending_tags: list[str]
    created_at: datetime
    updated_at: datetime
    stored: tuple[Any, ...] | None

    @classmethod
    def loaded(cls, values: Mapping[str, Any]) -> _Row:
        row = cls()
        row.__dict__.update(values)  # one call, where a setattr per column was a tenth of an import's time
        row.tags = list(row.tags or [])
        row.pending_fields = list(row.pending_fields or [])
        row.pending_tags = list(row.pending_tags or [])
        row.stored = row.synced_values()
        return row

    @classmethod
    def new(cls, contact_id: int, shop_id: int, source: Source, now: datetime) -> _Row:
        row = cls()
        row.__dict__.update(_NO_VALUES)
        row.id = contact_id
        row.shop_id = shop_id
        row.source = str(source)
        row.created_at = row.updated_at = now
        row.email_consent = row.sms_consent = _NOT_SUBSCRIBED
        row.tags, row.pending_fields, row.pending_tags = [], [], []
        row.sync_status = _SYNCED if source is Source.PLATFORM else _LOCAL
        row.stored = None
        return row

    def synced_values(self) -> tuple[Any, ...]:
        return _SYNCED_VALUES(self)  # type: ignore[no-any-return]

    def cells(self) -> list[Any]:
        return list(_ROW_CELLS(self))

    def values(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in _COLUMNS}


_ROW_CELLS = operator.attrgetter(*_COLUMNS)
# One C call where a generator of getattr cost a re-import 8% of its time (twice per contact it reads).
_SYNCED_VALUES = operator.attrgetter(*_SYNCED_COLUMNS)
# Plain strings once: an enum member's ``.value`` is a property lookup, three per imported row.
_NOT_SUBSCRIBED = Consent.NOT_SUBSCRIBED.value
_SYNCED, _LOCAL = SyncStatus.SYNCED.value, SyncStatus.LOCAL.value
_NO_VALUES = dict.fromkeys(_COLUMNS)


def _plain(value: Any) -> Any:
    """StrEnum members (consent states, sync statuses) as the plain strings the columns hold."""
    return str(value) if isinstance(value, StrEnum) else value


# A write whose rows nobody reads: a statement with its parameters (app/prepared.py ``run_all``).
Statement = tuple[Any, Mapping[str, Any] | Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class _Writes:
    """A decided batch's writes, to send before its commit, in order: statements, and steps of their own
    (a ``COPY``, the one ``UPDATE`` of a re-import). Statements that follow each other go together in one
    round trip (``run_all``): a submission's contact, event, push and form count are one."""

    session: Session
    steps: Sequence[Statement | Callable[[], object]]

    def __call__(self, *then: Statement) -> None:
        """Send the writes, then the caller's own statements ``then`` with the last of them."""
        together: list[Statement] = []
        for step in [*self.steps, *then]:
            if isinstance(step, tuple):
                together.append(step)
                continue
            if together:
                run_all(connection_of(self.session), together)
                together = []
            step()
        if together:
            run_all(connection_of(self.session), together)

    def and_then(self, *steps: Statement | None) -> _Writes:
        return _Writes(self.session, [*self.steps, *(step for step in steps if step is not None)])


@dataclass
class _Batch:
    """The contacts a batch may touch, indexed by identifier, as the batch changes them."""

    contacts: dict[int, _Row] = field(default_factory=dict)
    by_email: dict[str, set[int]] = field(default_factory=dict)
    by_phone: dict[str, set[int]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, contact: _Row) -> None:
        self.contacts[contact.id] = contact
        if contact.email:
            self.by_email.setdefault(contact.email, set()).add(contact.id)
        if contact.phone:
            self.by_phone.setdefault(contact.phone, set()).add(contact.id)

    reserved: list[int] = field(default_factory=list)
    size: int = 1

    def next_id(self, session: Session) -> int:
        """A new contact's id, from ids reserved a batch at a time (PostgreSQL: the table's sequence;
        SQLite: after the largest id, safe because BEGIN IMMEDIATE makes this the only writer)."""
        if not self.reserved:
            if session.get_bind().dialect.name == "postgresql":
                # The sequence looked up once, not once per id (that look-up was 5 of every 6 µs); the ids
                # come back as one text value (a row each cost more to fetch than to reserve).
                reserved = session.connection().scalar(_RESERVE_IDS, {"n": self.size})
                self.reserved = [int(value) for value in reserved.split(",")]
            else:
                start = (session.scalar(sa.select(sa.func.max(_CONTACTS.c.id))) or 0) + 1
                # Contacts of this batch not yet written hold ids above the largest stored one.
                start = max([start, *(i + 1 for i in self.contacts)])
                self.reserved = list(range(start, start + self.size))
            self.reserved.reverse()
        return self.reserved.pop()

    def candidates(self, collected: Collected) -> list[Candidate]:
        by_email = self.by_email.get(collected.email) if collected.email else None
        by_phone = self.by_phone.get(collected.phone) if collected.phone else None
        if not by_email and not by_phone:
            return []  # most rows of an import of new people
        ids = (by_email or set()) | (by_phone or set())
        return [candidate_of(self.contacts[i]) for i in ids]

    def prepare(self, session: Session) -> _Writes:
        """The batch's changes, set-based, ready to send: the new contacts and the events each in one COPY
        (PostgreSQL, from ``_COPY_FROM_ROWS`` rows) or one executemany INSERT, the changed contacts in one
        executemany UPDATE.

        The rows become parameters, and on PostgreSQL COPY's text, here, on the thread that decided the
        batch; the function returned sends them. An import sends on another thread while this one decides
        the next batch, and sending then hardly needs Python's lock (formatting a thousand rows there made
        the sending thread the import's bottleneck)."""
        postgres = session.get_bind().dialect.name == "postgresql"
        steps: list[Statement | Callable[[], object]] = []
        created = [row for row in self.contacts.values() if row.stored is None]
        copy_contacts = postgres and len(created) >= _COPY_FROM_ROWS
        copy_events = postgres and len(self.events) >= _COPY_FROM_ROWS
        if copy_contacts:
            contacts_text = _copy_text(session, _CONTACTS, _COLUMNS, (row.cells() for row in created))
            steps.append(lambda: _send_copy(session, _CONTACTS, _COLUMNS, contacts_text))
        elif created:
            steps.append((_INSERT_CONTACT, [row.values() for row in created]))
        changed = [
            (row, current)
            for row in self.contacts.values()
            if row.stored is not None and (current := row.synced_values()) != row.stored
        ]
        if postgres and len(changed) >= _COPY_FROM_ROWS:
            # One statement for the batch (a re-import changes most of its rows): the rows as one JSON
            # parameter, planned once, where an executemany planned and ran each UPDATE on its own.
            update = {"shop_id": changed[0][0].shop_id, "rows": _updated_rows_json(changed)}
            # Not a prepared statement: a generic plan cannot know the batch's size (app/prepared.py).
            steps.append(lambda: connection_of(session).execute(_UPDATE_CONTACTS_FROM_JSON, update))
        elif changed:
            parameters = [
                {
                    "row_id": row.id,
                    "row_shop_id": row.shop_id,
                    **{f"new_{name}": _plain(v) for name, v in zip(_SYNCED_COLUMNS, current, strict=True)},
                }
                for row, current in changed
            ]
            steps.append((_UPDATE_CONTACT, parameters))
        if copy_events:
            cells = ([event[name] for name in _EVENT_COLUMNS] for event in self.events)
            events_text = _copy_text(session, _EVENTS, _EVENT_COLUMNS, cells)
            steps.append(lambda: _send_copy(session, _EVENTS, _EVENT_COLUMNS, events_text))
        elif self.events:
            steps.append((_INSERT_EVENT, self.events))
        # In this order: an event's contact is in the table before the event.
        return _Writes(session, steps)


_EVENT_COLUMNS = ("shop_id", "contact_id", "kind", "occurred_at", "data")
# Compact, and no cycle check (a sync's values are plain data): less for Python to do and PostgreSQL to parse.
_ENCODE_JSON = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
# The contacts' JSON columns that hold a list of strings (Contact.tags, .pending_fields, .pending_tags).
_STRING_LIST_COLUMNS = frozenset({"tags", "pending_fields", "pending_tags"})


def _copy_text(session: Session, table: sa.Table, columns: Sequence[str], rows: Iterable[list[Any]]) -> bytes:
    """Rows in the text format of PostgreSQL's COPY, formatted by psycopg (``FileWriter`` writes to memory;
    nothing goes to the server). JSON columns go as their JSON text (PostgreSQL parses it into JSONB;
    cheaper than the driver's JSONB wrapper); psycopg writes a StrEnum member as its value."""
    json_columns = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, sa.JSON)]
    string_lists = [i for i in json_columns if columns[i] in _STRING_LIST_COLUMNS]
    other_json = [i for i in json_columns if i not in string_lists]
    dumps = _ENCODE_JSON
    # A batch's lists of strings (tags, pending fields) repeat: each distinct one is encoded once.
    encoded_lists: dict[tuple[str, ...], str] = {(): "[]"}
    buffer = io.BytesIO()
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor, Copy(cursor, writer=FileWriter(buffer)) as copy:  # type: ignore[union-attr]
        for row in rows:
            for i in string_lists:
                key = tuple(row[i])
                text = encoded_lists.get(key)
                if text is None:
                    text = encoded_lists[key] = dumps(row[i])
                row[i] = text
            for i in other_json:
                row[i] = dumps(row[i])
            copy.write_row(row)
    return buffer.getvalue()


def _send_copy(session: Session, table: sa.Table, columns: Sequence[str], text: bytes) -> None:
    """PostgreSQL's COPY of ``_copy_text``'s rows on the session's own connection (so inside its
    transaction): about half the time of an executemany INSERT of the same rows."""
    driver = session.connection().connection.driver_connection
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        copy.write(text)


# The statements of the hottest paths, built once (app/db.py, PerDialect, says why).
_RESERVE_IDS = sa.text(
    "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('contacts', 'id')::regclass AS seq)"
    " SELECT string_agg(nextval(s.seq)::text, ',') FROM s, generate_series(1, :n)"
)
_INSERT_CONTACT = sa.insert(_CONTACTS).inline()  # the ids are reserved: nothing to return
# Inline: no ``RETURNING`` of the new id (SQLAlchemy asks for it by default on a one-row insert, and nobody
# reads it).
_INSERT_EVENT = sa.insert(_EVENTS).inline()
_SUPPRESSIONS: sa.Table = Suppression.__table__  # type: ignore[assignment]
_SUPPRESSED = sa.select(_SUPPRESSIONS.c.id, _SUPPRESSIONS.c.digest).where(
    listed_for_erasure(
        sa.bindparam("shop_id", type_=_SUPPRESSIONS.c.shop_id.type),
        sa.bindparam("digests", expanding=True, type_=_SUPPRESSIONS.c.digest.type),
    )
)
_LIFT_SUPPRESSIONS = sa.delete(_SUPPRESSIONS).where(
    _SUPPRESSIONS.c.id.in_(sa.bindparam("ids", expanding=True, type_=_SUPPRESSIONS.c.id.type))
)
_UPDATE_CONTACT = (
    sa.update(_CONTACTS)
    .where(_CONTACTS.c.id == sa.bindparam("row_id"), _CONTACTS.c.shop_id == sa.bindparam("row_shop_id"))
    .values({name: sa.bindparam(f"new_{name}", type_=_CONTACTS.c[name].type) for name in _SYNCED_COLUMNS})
)


# A batch's changed contacts for PostgreSQL's json_populate_recordset: each row's id and new values, the
# columns named as in the table, so PostgreSQL converts each value to its column's type (ISO timestamps
# with their offset, JSON lists into JSONB).
_SET_FROM_JSON = ", ".join(f"{name} = v.{name}" for name in _SYNCED_COLUMNS)  # the model's own names
_UPDATE_CONTACTS_FROM_JSON = sa.text(
    f"UPDATE contacts AS c SET {_SET_FROM_JSON}"  # noqa: S608
    " FROM json_populate_recordset(NULL::contacts, CAST(:rows AS json)) AS v"
    " WHERE c.id = v.id AND c.shop_id = :shop_id"
)


def _json_time(value: object) -> str:
    """A timestamp or a date in a JSON document, as ISO 8601; a timestamp must carry its offset."""
    if isinstance(value, datetime):
        return aware_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODE_UPDATED_ROWS = json.JSONEncoder(
    check_circular=False, separators=(",", ":"), default=_json_time
).encode
_UPDATED_ROW_KEYS = ("id", *_SYNCED_COLUMNS)


def _updated_rows_json(changed: Sequence[tuple[_Row, tuple[Any, ...]]]) -> str:
    """The changed rows' ids and synced values as one JSON array of objects."""
    return _ENCODE_UPDATED_ROWS(
        [dict(zip(_UPDATED_ROW_KEYS, (row.id, *current), strict=True)) for row, current in changed]
    )


def candidate_of(contact: Contact | _Row) -> Candidate:
    return Candidate(
        id=contact.id,
        updated_at=contact.updated_at,
        email=contact.email,
        phone=contact.phone,
        first_name=contact.first_name,
        last_name=contact.last_name,
        birthday=contact.birthday,
        gender=contact.gender,
        country=contact.country,
        email_consent=contact.email_consent,
        sms_consent=contact.sms_consent,
        tags=tuple(contact.tags or ()),
    )


class OpenBatch:
    """A decided batch in its open transaction: ``commit`` writes it (the contacts and events set-based,
    the outbox rows), runs ``before_commit`` in the same transaction and commits; ``rollback`` drops it.
    Either may run on another thread than the one that opened it, never on two at once."""

    def __init__(
        self,
        source: Source,
        session: Session,
        transaction: contextlib.ExitStack,
        results: list[SyncResult],
        writes: Callable[[], object],
    ) -> None:
        self.source = source
        self.session = session
        self.results = results
        self._transaction = transaction
        self._writes = writes

    def commit(
        self, before_commit: Callable[[Session, list[SyncResult]], None] | None = None
    ) -> list[SyncResult]:
        with self._transaction:
            self._writes()
            if before_commit is not None:
                before_commit(self.session, self.results)
        # Counted once committed: a rolled-back batch synced nothing.
        metrics.record_syncs(self.source.value, Counter(result.action for result in self.results))
        return self.results

    def rollback(self) -> None:
        # Leaving the transaction's context with an error is how it rolls back (and closes the session).
        self._transaction.__exit__(_RolledBack, _RolledBack(), None)


class _RolledBack(Exception):
    """The reason ``OpenBatch.rollback`` gives the transaction's context for leaving it."""


class ContactService:
    """The imperative shell around ``rules.decide``; owns the transaction, the locks and the outbox."""

    def __init__(self, db: Database, keyring: Keyring, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock

    def sync(
        self,
        shop_id: int,
        collected: Collected,
        *,
        source: Source,
        evidence: Mapping[str, Any] | None = None,
        write_platform: bool | None = None,
        link_customer_id: str | None = None,
        lift_suppression: bool | None = None,
    ) -> SyncResult:
        """Sync one record by the rules, in one transaction, and return what happened.

        ``write_platform`` defaults to rule 9: submissions, opens and clicks write the platform customer;
        imports only when the merchant asked; platform changes never. ``link_customer_id`` links the contact
        to a platform customer whose email and phone were the identifiers (rule 1's second half).
        ``lift_suppression`` defaults to rule 11: a storefront submission lifts the suppression of the
        identifiers the shopper typed; identifiers fetched from the platform (rule 1) never do.
        """
        return self.sync_batch(
            shop_id,
            [collected],
            source=source,
            evidence=[evidence or {}],
            write_platform=write_platform,
            link_customer_id=link_customer_id,
            lift_suppression=lift_suppression,
        )[0]

    def sync_batch(
        self,
        shop_id: int,
        records: Sequence[Collected],
        *,
        source: Source,
        evidence: Sequence[Mapping[str, Any]] | None = None,
        write_platform: bool | None = None,
        link_customer_id: str | None = None,
        lift_suppression: bool | None = None,
        before_commit: Callable[[Session, list[SyncResult]], None] | None = None,
    ) -> list[SyncResult]:
        """Sync records in order, in one transaction: the same result as syncing them one by one.

        ``before_commit`` runs inside that transaction with the results (an import records its progress
        there, so a batch and its progress commit together; raising from it rolls the batch back)."""
        opened = self.open_batch(
            shop_id,
            records,
            source=source,
            evidence=evidence,
            write_platform=write_platform,
            link_customer_id=link_customer_id,
            lift_suppression=lift_suppression,
        )
        return opened.commit(before_commit)

    def open_batch(
        self,
        shop_id: int,
        records: Sequence[Collected],
        *,
        source: Source,
        evidence: Sequence[Mapping[str, Any]] | None = None,
        write_platform: bool | None = None,
        link_customer_id: str | None = None,
        lift_suppression: bool | None = None,
    ) -> OpenBatch:
        """``sync_batch``'s first half: the transaction is opened, the identifiers locked, the candidates
        read and every record decided; the writes wait in the returned ``OpenBatch`` until its ``commit``
        (or ``rollback``). An import commits one batch on another thread while it decides the next
        (app/imports.py): the locks the open transaction holds keep the two apart wherever they share an
        identifier or a contact."""
        write_platform, lift = _rule_defaults(source, write_platform, lift_suppression)
        evidence = evidence or [{} for _ in records]
        transaction = contextlib.ExitStack()
        session = transaction.enter_context(self.db.write_transaction())
        try:
            results, writes = self._sync_records(
                session, shop_id, records, source, evidence, write_platform, link_customer_id, lift
            )
        except BaseException:
            transaction.__exit__(*sys.exc_info())  # rolls back
            raise
        return OpenBatch(source, session, transaction, results, writes)

    def sync_in_transaction(
        self,
        session: Session,
        shop_id: int,
        records: Sequence[Collected],
        *,
        source: Source,
        evidence: Sequence[Mapping[str, Any]],
        write_platform: bool | None = None,
        lift_suppression: bool | None = None,
        then_write: Sequence[Statement] = (),
    ) -> list[SyncResult]:
        """``sync_batch`` inside the caller's transaction, for a caller whose own writes must commit with
        the sync (the tracking drain's claim of its hits, a submission's form count): decided, written,
        not committed. The same defaults as ``sync``. The syncs are counted (app/metrics.py) when the
        caller's transaction commits.

        ``then_write``: the caller's own writes, statements sent with the sync's last ones (a submission's
        form count)."""
        write_platform, lift = _rule_defaults(source, write_platform, lift_suppression)
        results, write = self._sync_records(
            session, shop_id, records, source, evidence, write_platform, None, lift
        )
        write(*then_write)
        tally = Counter(result.action for result in results)
        after_commit(session, lambda: metrics.record_syncs(source.value, tally))
        return results

    def _sync_records(
        self,
        session: Session,
        shop_id: int,
        records: Sequence[Collected],
        source: Source,
        evidence: Sequence[Mapping[str, Any]],
        write_platform: bool,
        link_customer_id: str | None,
        lift_suppression: bool,
    ) -> tuple[list[SyncResult], _Writes]:
        """Decide every record; returns the results and the batch's writes, to run before the commit."""
        emails = {r.email for r in records if r.email}
        phones = {r.phone for r in records if r.phone}
        lock_keys = [identifier_lock_key(shop_id, "email", e) for e in emails] + [
            identifier_lock_key(shop_id, "phone", p) for p in phones
        ]
        if len(records) == 1 and (emails or phones) and session.get_bind().dialect.name == "postgresql":
            suppressed, batch = self._read_one(
                session, shop_id, emails, phones, lock_keys, lift=lift_suppression
            )
        else:
            _lock_batch_identifiers(session, lock_keys)
            suppressed = self._suppressed_identifiers(session, shop_id, emails, phones, lift=lift_suppression)
            batch = _Batch(size=len(records))
            for contact in _load_candidates(session, shop_id, emails, phones):
                batch.add(contact)

        started = self.clock()
        results: list[SyncResult] = []
        pushes: set[int] = set()
        event_kind = EVENT_KIND_BY_SOURCE[source].value
        for index, collected in enumerate(records):
            # Each record of a batch is a little later than the one before: rule 5's "most recently
            # updated" then orders the contacts a batch touches as if they had been synced one by one.
            now = started + timedelta(microseconds=index)
            if suppressed and suppressed & {("email", collected.email), ("phone", collected.phone)}:
                results.append(SyncResult(Action.SKIP, "an erased person's identifier (rule 11)"))
                continue
            decision = rules.decide(collected, batch.candidates(collected))
            if decision.action is Action.SKIP:
                results.append(SyncResult(decision.action, decision.reason))
                continue
            if decision.action is Action.IDENTIFY:
                session.add(_identify_job(shop_id, collected, source, evidence[index], write_platform))
                results.append(SyncResult(decision.action, decision.reason))
                continue
            contact = self._apply(session, shop_id, batch, decision, source, now)
            if link_customer_id and not contact.platform_customer_id:
                contact.platform_customer_id = link_customer_id
            touched = [contact, *(batch.contacts[i] for i, _ in decision.unsubscribe_others)]
            for other_id, channel in decision.unsubscribe_others:
                batch.events.append(
                    {
                        "shop_id": shop_id,
                        "contact_id": other_id,
                        "kind": EventKind.UNSUBSCRIBED.value,
                        "occurred_at": now,
                        "data": {
                            "channel": channel,
                            "source": str(source),
                            "because": "identifier unsubscribed",
                        },
                    }
                )
            changed = sorted(decision.changes)
            batch.events.append(
                {
                    "shop_id": shop_id,
                    "contact_id": contact.id,
                    "kind": event_kind,
                    "occurred_at": now,
                    "data": {
                        "action": _event_action(decision),
                        "changed": changed,
                        "reason": decision.reason,
                        **evidence[index],
                    },
                }
            )
            for touched_contact in touched:
                if write_platform and _mark_for_platform(touched_contact, decision, contact):
                    pushes.add(touched_contact.id)
            results.append(SyncResult(decision.action, decision.reason, contact.id, tuple(changed)))

        return results, batch.prepare(session).and_then(_pushes(session, shop_id, sorted(pushes), started))

    def _apply(
        self,
        session: Session,
        shop_id: int,
        batch: _Batch,
        decision: rules.Decision,
        source: Source,
        now: datetime,
    ) -> _Row:
        if decision.action is Action.CREATE:
            # The id now (events, later records of the batch and rule 5's tie-break need it): ids are
            # reserved for the batch in one query and the inserts go out together at the end.
            contact = _Row.new(batch.next_id(session), shop_id, source, now)
            _set_values(contact, decision.changes, source, now)
            batch.add(contact)
        else:
            assert decision.target_id is not None
            contact = batch.contacts[decision.target_id]
            if decision.changes:
                _set_values(contact, decision.changes, source, now)
                batch.add(contact)  # it may have gained an identifier
        for other_id, channel in decision.unsubscribe_others:
            # The other holders' consent changes but their updated_at does not: the contact this record
            # landed on stays the most recently updated one (rule 5), so the same record applied again
            # lands on it again and changes nothing.
            other = batch.contacts[other_id]
            _set_values(other, {rules.CONSENT_FIELDS[channel]: "unsubscribed"}, source, now, touch=False)
        return contact

    def _suppressed_identifiers(
        self, session: Session, shop_id: int, emails: set[str], phones: set[str], *, lift: bool
    ) -> set[tuple[str, str]]:
        """Which identifiers are on the shop's erasure list; a new submission lifts its own (rule 11)."""
        if not emails and not phones:
            return set()
        if len(emails) + len(phones) > _SUPPRESSION_PROBE_OVER and not session.scalar(
            sa.select(sa.exists().where(Suppression.shop_id == shop_id))
        ):
            # Most shops have erased nobody: one cheap probe spares an import batch its 1,500 keyed
            # hashes and the look-up of each.
            return set()
        by_digest = self._suppression_digests(emails, phones)
        connection = session.connection()
        rows = connection.execute(_SUPPRESSED, {"shop_id": shop_id, "digests": list(by_digest)}).all()
        return _suppressed_or_lifted(connection, by_digest, [(row.id, row.digest) for row in rows], lift)

    def _suppression_digests(self, emails: set[str], phones: set[str]) -> dict[str, tuple[str, str]]:
        """The keyed hashes under which the identifiers would be on the erasure list (every key held),
        each with its identifier."""
        by_digest: dict[str, tuple[str, str]] = {}
        for kind, values in (("email", emails), ("phone", phones)):
            for value in values:
                for digest in self.keyring.digests(SUPPRESSION_PURPOSE, f"{kind}:{value}"):
                    by_digest[digest] = (kind, value)
        return by_digest

    def _read_one(
        self,
        session: Session,
        shop_id: int,
        emails: set[str],
        phones: set[str],
        lock_keys: list[int],
        *,
        lift: bool,
    ) -> tuple[set[tuple[str, str]], _Batch]:
        """PostgreSQL, one record (a submission, an open): the identifiers' locks, then what
        ``_suppressed_identifiers`` and ``_load_candidates`` read and the id a new contact would take, in
        one statement (``_READ_ONE``) instead of three, sent together with the locks (the server runs the
        read once it holds them); the candidates' rows then by id, only when there are any."""
        by_digest = self._suppression_digests(emails, phones)
        connection = connection_of(session)
        params = {
            "shop_id": shop_id,
            "email": next(iter(emails), None),
            "phone": next(iter(phones), None),
            "digests": list(by_digest),
        }
        contact_ids: set[int] = set()
        suppressions: list[tuple[int, str]] = []
        batch = _Batch(size=1)
        read = run_all(connection, [*identifier_locks(lock_keys), (_READ_ONE, params)])[-1]
        for what, number, digest in read:
            if what == "contact":
                contact_ids.add(number)
            elif what == "suppression":
                suppressions.append((number, digest))
            else:  # the id reserved for a new contact (unused, and skipped by the sequence, if none is made)
                batch.reserved = [number]
        if contact_ids:
            rows = run(connection, _CANDIDATES_BY_ID, {"shop_id": shop_id, "ids": sorted(contact_ids)})
            for row in rows.mappings():
                batch.add(_Row.loaded(row))
        return _suppressed_or_lifted(connection, by_digest, suppressions, lift), batch

    def suppress(self, session: Session, shop_id: int, kind: str, value: str) -> None:
        """Put an identifier on the shop's erasure list as a keyed hash (rule 11)."""
        digest = self.keyring.digest(SUPPRESSION_PURPOSE, f"{kind}:{value}")
        exists = session.scalar(
            sa.select(Suppression.id).where(
                Suppression.shop_id == shop_id, Suppression.kind == kind, Suppression.digest == digest
            )
        )
        if exists is None:
            session.add(Suppression(shop_id=shop_id, kind=kind, digest=digest))


def _suppressed_or_lifted(
    connection: sa.Connection,
    by_digest: Mapping[str, tuple[str, str]],
    found: Sequence[tuple[int, str]],
    lift: bool,
) -> set[tuple[str, str]]:
    """The identifiers whose erasure-list entries (id, digest) were found; none when the sync lifts them
    (rule 11: a new submission lifts its own), the entries then deleted."""
    if lift and found:
        connection.execute(_LIFT_SUPPRESSIONS, {"ids": [entry_id for entry_id, _ in found]})
        return set()
    return {by_digest[digest] for _, digest in found}


def _rule_defaults(
    source: Source, write_platform: bool | None, lift_suppression: bool | None
) -> tuple[bool, bool]:
    """Rule 9's platform write (submissions, opens and clicks write; imports only when asked; platform
    changes never) and rule 11's lifting (a storefront submission lifts its own identifiers' erasure)."""
    if write_platform is None:
        write_platform = source in (Source.FORM, Source.OPEN, Source.CLICK)
    if source is Source.PLATFORM:
        write_platform = False
    lift = source is Source.FORM if lift_suppression is None else lift_suppression
    return write_platform, lift


def _lock_batch_identifiers(session: Session, keys: list[int]) -> None:
    """``lock_identifiers`` in one statement for a batch (one round trip per identifier made imports slow).

    PostgreSQL evaluates a volatile function in the select list after ORDER BY, so the locks are still
    taken in ascending key order: two batches wanting overlapping sets never wait on each other in a cycle.
    """
    if len(keys) <= 2 or session.get_bind().dialect.name != "postgresql":
        lock_identifiers(session, keys)
        return
    session.connection().execute(_ADVISORY_LOCKS, {"keys": _joined(sorted(set(keys)), ",")})


_ADVISORY_LOCKS = sa.text(
    "SELECT pg_advisory_xact_lock(k)"
    " FROM unnest(CAST(string_to_array(:keys, ',') AS bigint[])) AS t(k) ORDER BY k"
)


def _load_candidates(session: Session, shop_id: int, emails: set[str], phones: set[str]) -> list[_Row]:
    """Every contact of the shop holding one of the batch's emails or phones, in one query."""
    if not emails and not phones:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # The arrays drive the query: one index probe per identifier on (shop_id, email) or (shop_id,
        # phone), forced by LATERAL ... OFFSET 0 (a subquery PostgreSQL cannot flatten into a join). Every
        # shape that leaves the choice to the planner went wrong on a table growing under an import, before
        # ANALYZE has seen it: "email = ANY(:emails)" became, once psycopg prepared the statement (the sixth
        # batch), a generic plan testing each of the shop's contacts against the whole array (20 -> 320 ms
        # per batch of 1,000 at 20,000 contacts), and a plain join became a hash join over every contact of
        # the shop (80 ms at 150,000). Then the rows themselves by primary key, only when there are any
        # (a batch of new people has none).
        connection = session.connection()
        ids = connection.scalars(
            _CANDIDATE_IDS,
            {
                "shop_id": shop_id,
                "emails": _joined(sorted(emails), "\n"),
                "phones": _joined(sorted(phones), "\n"),
            },
        ).all()
        if not ids:
            return []
        result = connection.execute(_CANDIDATE_ROWS_BY_ID, {"shop_id": shop_id, "ids": sorted(ids)})
        return _loaded_with_lists_as_text(list(result.keys()), result.all())
    conditions = []
    if emails:
        conditions.append(_CONTACTS.c.email.in_(sorted(emails)))
    if phones:
        conditions.append(_CONTACTS.c.phone.in_(sorted(phones)))
    # SQLite has no row locks and needs none: BEGIN IMMEDIATE already serialises writers.
    statement = (
        sa.select(_CONTACTS)
        .where(_CONTACTS.c.shop_id == shop_id, sa.or_(*conditions))
        .order_by(_CONTACTS.c.id)
    )
    return [_Row.loaded(values) for values in session.execute(statement).mappings()]


_BIGINT_ARRAY = postgresql.ARRAY(sa.BigInteger())
_CANDIDATE_IDS = sa.text(
    "SELECT c.id FROM unnest(string_to_array(:emails, E'\\n')) AS v(value) CROSS JOIN LATERAL"
    " (SELECT id FROM contacts WHERE shop_id = :shop_id AND email = v.value OFFSET 0) AS c"
    " UNION"
    " SELECT c.id FROM unnest(string_to_array(:phones, E'\\n')) AS v(value) CROSS JOIN LATERAL"
    " (SELECT id FROM contacts WHERE shop_id = :shop_id AND phone = v.value OFFSET 0) AS c"
)
# One record's reads in one round trip: the contacts holding its email or its phone (each an index probe;
# NULL matches nothing), its identifiers' entries on the erasure list, and an id for a new contact.
_READ_ONE = sa.text(
    "SELECT 'contact', c.id, NULL FROM contacts AS c WHERE c.shop_id = :shop_id AND c.email = :email"
    " UNION ALL"
    " SELECT 'contact', c.id, NULL FROM contacts AS c WHERE c.shop_id = :shop_id AND c.phone = :phone"
    " UNION ALL"
    " SELECT 'suppression', p.id, p.digest FROM suppressions AS p"
    " WHERE p.shop_id = :shop_id AND p.kind IN ('email', 'phone')"  # as models.listed_for_erasure
    " AND p.digest = ANY(CAST(:digests AS text[]))"
    " UNION ALL"
    " SELECT 'new id', nextval(pg_get_serial_sequence('contacts', 'id')::regclass), NULL"
).columns(
    sa.column("what", sa.String()), sa.column("number", sa.BigInteger()), sa.column("digest", sa.Text())
)


# FOR UPDATE: a sync holding other identifiers may be updating the same contact (say, one that has both our
# email and their phone); wait for it and read what it committed.
def _by_id_for_update(*columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return (
        sa.select(*columns)
        .where(
            _CONTACTS.c.shop_id == sa.bindparam("shop_id", type_=_CONTACTS.c.shop_id.type),
            _CONTACTS.c.id == sa.any_(sa.bindparam("ids", type_=_BIGINT_ARRAY)),
        )
        .order_by(_CONTACTS.c.id)
        .with_for_update()
    )


_CANDIDATES_BY_ID = _by_id_for_update(*_CONTACTS.columns)
# _CANDIDATES_BY_ID for a batch's many candidates (a re-import reads a contact for each row): the string
# lists as their JSON text, so each distinct list (most are [] or a handful of tags) is decoded once a batch,
# where the driver decoded three JSON values a contact, a seventh of a re-import's time.
_CANDIDATE_ROWS_BY_ID = _by_id_for_update(
    *(
        sa.cast(column, sa.Text).label(column.name) if column.name in _STRING_LIST_COLUMNS else column
        for column in _CONTACTS.columns
    )
)


def _loaded_with_lists_as_text(keys: list[str], rows: Sequence[Sequence[Any]]) -> list[_Row]:
    """``_CANDIDATE_ROWS_BY_ID``'s rows as ``_Row``s, each distinct JSON list decoded once (every row gets
    its own copy: ``_Row.loaded`` copies the lists)."""
    lists = [keys.index(name) for name in _STRING_LIST_COLUMNS]
    decoded: dict[str | None, list[str]] = {None: []}
    loaded = []
    for row in rows:
        values = dict(zip(keys, row, strict=True))
        for index in lists:
            text = row[index]
            value = decoded.get(text)
            if value is None:
                value = decoded[text] = json.loads(text)
            values[keys[index]] = value
        loaded.append(_Row.loaded(values))
    return loaded


def _joined(values: Sequence[object], separator: str) -> str:
    """A batch's identifiers or lock keys as one text parameter that SQL splits back (``string_to_array``):
    the driver builds a 1,500-element array parameter one Python call per element, which cost more than
    the query. Normalised emails and phones never hold the separator; a value that did would split wrongly,
    so it is refused."""
    text = separator.join(map(str, values))
    if text.count(separator) != max(len(values) - 1, 0):
        raise ValueError("an identifier holds the separator")
    return text


def _set_values(
    contact: Contact | _Row, changes: Mapping[str, Any], source: Source, now: datetime, *, touch: bool = True
) -> None:
    for name, value in changes.items():
        setattr(contact, name, list(value) if name == "tags" else value)
        if name in ("email_consent", "sms_consent"):
            setattr(contact, f"{name}_at", now)
            setattr(contact, f"{name}_source", str(source))
    if changes and touch:
        contact.updated_at = now


def unsubscribe_holders(
    session: Session,
    shop_id: int,
    channel: str,
    value: str,
    *,
    source: Source,
    now: datetime,
    event: Mapping[str, Any] | None = None,
    except_id: int | None = None,
) -> list[Contact]:
    """Rule 8 inside the caller's transaction (which holds the identifier's lock): every contact of the shop
    holding ``value`` for ``channel``'s identifier, not yet unsubscribed, is unsubscribed with an
    ``unsubscribed`` event (``event`` adds to its data). Returns them; the caller decides about the platform
    write (a platform's own unsubscribe is never written back)."""
    identifier = rules.CHANNEL_IDENTIFIER[channel]
    consent_field = rules.CONSENT_FIELDS[channel]
    statement = sa.select(Contact).where(
        Contact.shop_id == shop_id,
        getattr(Contact, identifier) == value,
        getattr(Contact, consent_field) != Consent.UNSUBSCRIBED,
    )
    if except_id is not None:
        statement = statement.where(Contact.id != except_id)
    holders = list(session.scalars(statement.order_by(Contact.id).with_for_update()))
    for contact in holders:
        _set_values(contact, {consent_field: Consent.UNSUBSCRIBED}, source, now)
        session.add(
            ContactEvent(
                shop_id=shop_id,
                contact_id=contact.id,
                kind=EventKind.UNSUBSCRIBED,
                occurred_at=now,
                data={"channel": channel, "source": str(source), **(event or {})},
            )
        )
    return holders


def _mark_for_platform(contact: _Row, decision: rules.Decision, target: _Row) -> bool:
    """Record what the platform write must carry; True when the contact needs a push (rule 9)."""
    if contact is target:
        changed = [f for f in PLATFORM_FIELDS if f in decision.changes]
        # Only the tags this record added: a tag the merchant removed on the platform is not put back.
        added_tags = list(decision.added_tags)
        if contact.sync_status == SyncStatus.LOCAL:
            # Never written to the platform (an import kept in popsync): it all goes now.
            changed = [f for f in PLATFORM_FIELDS if _has_value(contact, f)]
            added_tags = list(contact.tags or [])
    elif contact.sync_status == SyncStatus.LOCAL:
        return False  # kept in popsync on purpose (an import without the platform): it stays local
    else:
        changed = [
            f for f in ("email_consent", "sms_consent") if f in _unsubscribed_fields(decision, contact)
        ]
        added_tags = []
    if not changed and not added_tags:
        return False
    contact.pending_fields = sorted({*(contact.pending_fields or []), *changed})
    contact.pending_tags = list(dict.fromkeys([*(contact.pending_tags or []), *added_tags]))
    contact.sync_status = SyncStatus.PENDING
    return True


def _unsubscribed_fields(decision: rules.Decision, contact: _Row) -> set[str]:
    return {
        rules.CONSENT_FIELDS[channel] for cid, channel in decision.unsubscribe_others if cid == contact.id
    }


def _has_value(contact: _Row, name: str) -> bool:
    value = getattr(contact, name)
    if name.endswith("_consent"):
        return value in ("subscribed", "unsubscribed")
    return value is not None


def _event_action(decision: rules.Decision) -> str:
    if decision.action is Action.CREATE:
        return "created"
    return "updated" if decision.changes else "unchanged"


def enqueue_pushes(session: Session, shop_id: int, contact_ids: list[int], now: datetime) -> None:
    """One waiting push per contact: a later sync joins the waiting row instead of adding another.

    Runs on the session's connection, without the ORM: a contact added to the session as an ORM object
    must be flushed first (every caller does), or its row is not there for the push to refer to."""
    statement = _pushes(session, shop_id, contact_ids, now)
    if statement is not None:
        run(connection_of(session), *statement)


def _pushes(session: Session, shop_id: int, contact_ids: list[int], now: datetime) -> Statement | None:
    """``enqueue_pushes``' statement, to send with a batch's other writes; None for no contacts."""
    if not contact_ids:
        return None
    rows = [
        {
            "shop_id": shop_id,
            "contact_id": contact_id,
            "kind": OutboxKind.PUSH_CONTACT.value,
            "payload": {},
            "status": OutboxStatus.PENDING.value,
            "priority": 100,
            "attempts": 0,
            "due_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for contact_id in contact_ids
    ]
    return (_ENQUEUE_PUSH(connection_of(session)), rows)


_OUTBOX: sa.Table = OutboxItem.__table__  # type: ignore[assignment]
# Joins the contact's waiting push if it has one (the partial unique index uq_outbox_items_pending_push).
_ENQUEUE_PUSH = PerDialect(
    lambda dialect: (
        upsert_for(dialect, _OUTBOX)
        .on_conflict_do_nothing(
            index_elements=[_OUTBOX.c.contact_id],
            index_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
        )
        .inline()
    )  # no RETURNING of the new id, as _INSERT_EVENT
)


def _identify_job(
    shop_id: int, collected: Collected, source: Source, evidence: Mapping[str, Any], write_platform: bool
) -> OutboxItem:
    """Rule 1: the worker fetches the logged-in customer, then syncs with its email and phone."""
    values = {
        name: getattr(collected, name).isoformat() if name == "birthday" else getattr(collected, name)
        for name in ("first_name", "last_name", "birthday", "gender", "country")
        if getattr(collected, name) is not None
    }
    return OutboxItem(
        shop_id=shop_id,
        kind=OutboxKind.IDENTIFY_CUSTOMER,
        priority=50,
        payload={
            "customer_id": collected.customer_id,
            "values": values,
            "tags": list(collected.tags),
            "source": str(source),
            "evidence": dict(evidence),
            "write_platform": write_platform,
        },
    )


def init_app(app: Any, service: ContactService) -> None:
    app.extensions["popsync.contacts"] = service


def get_service() -> ContactService:
    return current_app.extensions["popsync.contacts"]


# --- what the platforms tell us ----------------------------------------------------------------------

MIRRORED_FIELDS = ("email", "phone", "first_name", "last_name", "country")


def person_contacts(
    session: Session, shop_id: int, *, customer_id: str | None, emails: list[str], phones: list[str]
) -> list[Contact]:
    """The shop's contacts of one person, as a privacy request names them: by the platform customer's id,
    or any of their emails or phones."""
    conditions = []
    if customer_id:
        conditions.append(Contact.platform_customer_id == customer_id)
    if emails:
        conditions.append(Contact.email.in_(emails))
    if phones:
        conditions.append(Contact.phone.in_(phones))
    if not conditions:
        return []
    return list(session.scalars(sa.select(Contact).where(Contact.shop_id == shop_id, sa.or_(*conditions))))


@dataclass(frozen=True)
class MirroredCustomer:
    """A platform customer as a webhook or a backfill reports it, normalised (invalid values dropped)."""

    id: str
    updated_at: datetime | None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None


class MirrorService:
    """Applies platform changes to the contact list (the contract's webhook paragraph). Never writes back:
    a mirrored value leaves the contact's pending platform changes."""

    def __init__(self, contacts: ContactService) -> None:
        self.contacts = contacts

    def mirror(
        self, shop_id: int, customer: MirroredCustomer, *, event: Mapping[str, Any] | None = None
    ) -> str:
        """Apply one customer's non-empty values to its linked contacts (or link one by rules 2-4, or add a
        contact with source ``platform``), only when ``updated_at`` is strictly newer than the last platform
        change applied. Returns what happened, in words."""
        db = self.contacts.db
        with db.write_transaction() as session:
            lock_identifiers(
                session,
                [
                    identifier_lock_key(shop_id, kind, value)
                    for kind, value in (("email", customer.email), ("phone", customer.phone))
                    if value
                ],
            )
            linked = list(
                session.scalars(
                    sa.select(Contact)
                    .where(Contact.shop_id == shop_id, Contact.platform_customer_id == customer.id)
                    .with_for_update()
                )
            )
            if linked:
                # Rule 11: an erased email or phone does not come back through a linked customer's update
                # (say, another customer's record edited to it); the rest of the update applies.
                erased = self.contacts._suppressed_identifiers(
                    session,
                    shop_id,
                    {customer.email} if customer.email else set(),
                    {customer.phone} if customer.phone else set(),
                    lift=False,
                )
                erased_fields = {kind for kind, _ in erased}
                applied = [
                    self._apply_mirror(session, contact, customer, event, erased_fields) for contact in linked
                ]
                return "applied" if any(applied) else "ignored: not newer than the last change applied"
        if not customer.email and not customer.phone:
            return "ignored: no email or phone"
        collected = Collected(
            email=customer.email,
            phone=customer.phone,
            first_name=customer.first_name,
            last_name=customer.last_name,
            country=customer.country,
        )
        result = self.contacts.sync(
            shop_id,
            collected,
            source=Source.PLATFORM,
            evidence={"customer_id": customer.id, **(event or {})},
            write_platform=False,
            link_customer_id=customer.id,
            lift_suppression=False,
        )
        if result.contact_id is None:
            return f"ignored: {result.reason}"
        with db.write_transaction() as session:
            contact = session.get(Contact, result.contact_id)
            if contact is not None:
                contact.pending_fields = [f for f in contact.pending_fields if f not in result.changed]
                if contact.platform_customer_id == customer.id and customer.updated_at is not None:
                    contact.platform_updated_at = max(
                        customer.updated_at, contact.platform_updated_at or customer.updated_at
                    )
        return "created" if result.action is Action.CREATE else "linked"

    def _apply_mirror(
        self,
        session: Session,
        contact: Contact,
        customer: MirroredCustomer,
        event: Mapping[str, Any] | None,
        erased_fields: set[str],
    ) -> bool:
        if (
            customer.updated_at is not None
            and contact.platform_updated_at is not None
            and customer.updated_at <= contact.platform_updated_at
        ):
            return False  # the echo of our own write, or a late, out-of-order delivery
        now = self.contacts.clock()
        changed = {
            name: getattr(customer, name)
            for name in MIRRORED_FIELDS
            if getattr(customer, name)
            and getattr(customer, name) != getattr(contact, name)
            and name not in erased_fields
        }
        _set_values(contact, changed, Source.PLATFORM, now)
        contact.pending_fields = [f for f in contact.pending_fields if f not in changed]
        if customer.updated_at is not None:
            contact.platform_updated_at = customer.updated_at
        session.add(
            ContactEvent(
                shop_id=contact.shop_id,
                contact_id=contact.id,
                kind=EventKind.MIRRORED,
                occurred_at=now,
                data={"customer_id": customer.id, "changed": sorted(changed), **(event or {})},
            )
        )
        return True

    def unsubscribe_identifier(self, shop_id: int, channel: str, value: str, *, source: Source) -> int:
        """Rule 8: an unsubscribe reaches every contact holding that email or phone; returns how many."""
        identifier = rules.CHANNEL_IDENTIFIER[channel]
        now = self.contacts.clock()
        with self.contacts.db.write_transaction() as session:
            lock_identifiers(session, [identifier_lock_key(shop_id, identifier, value)])
            return len(unsubscribe_holders(session, shop_id, channel, value, source=source, now=now))

    def unlink(self, shop_id: int, customer_id: str) -> int:
        """The platform customer was deleted: its contacts stay in the list, unlinked."""
        with self.contacts.db.write_transaction() as session:
            result = session.execute(
                sa.update(Contact)
                .where(Contact.shop_id == shop_id, Contact.platform_customer_id == customer_id)
                .values(platform_customer_id=None, platform_updated_at=None)
            )
            return result.rowcount or 0

    def erase_person(
        self, shop_id: int, *, customer_id: str | None, emails: list[str], phones: list[str]
    ) -> int:
        """Rule 11: delete the person's contacts and events; keep their identifiers only as keyed hashes."""
        with self.contacts.db.write_transaction() as session:
            doomed = person_contacts(session, shop_id, customer_id=customer_id, emails=emails, phones=phones)
            all_emails = set(emails) | {c.email for c in doomed if c.email}
            all_phones = set(phones) | {c.phone for c in doomed if c.phone}
            for email in sorted(all_emails):
                self.contacts.suppress(session, shop_id, "email", email)
            for phone in sorted(all_phones):
                self.contacts.suppress(session, shop_id, "phone", phone)
            if doomed:
                session.execute(sa.delete(Contact).where(Contact.id.in_([c.id for c in doomed])))
            return len(doomed)


# --- what the merchant does (the admin API) -----------------------------------------------------------

# Contacts per transaction in bulk work: each holds the identifier locks of its contacts, and PostgreSQL's
# shared lock table (max_locks_per_transaction) would not hold 10,000 contacts' advisory locks at once.
BULK_CHUNK = 500
EDITABLE_FIELDS = (*rules.PROFILE_FIELDS, "email_consent", "sms_consent", "tags")
MERCHANT_CONSENT_STATES = ("subscribed", "unsubscribed", "not_subscribed")
CONTACT_DELETED = "contact.deleted"


@dataclass(frozen=True)
class EditResult:
    contact_id: int
    changed: tuple[str, ...]
    # Other contacts an unsubscribe reached (rule 8).
    unsubscribed_others: tuple[int, ...] = ()


class MerchantService:
    """The merchant's own changes: edits, consent (one contact or many) and deletions. Each runs in one
    transaction (bulk work in chunks of ``BULK_CHUNK``) that locks the identifiers it touches as a sync
    does, records an event (``edited``, or ``unsubscribed`` on the other holders an unsubscribe reaches),
    and queues the platform write (rule 9) in the same commit. Deletions go to the audit log instead."""

    def __init__(self, contacts: ContactService) -> None:
        self.contacts = contacts

    def edit(
        self, shop_id: int, contact_id: int, values: Mapping[str, Any], *, actor: str
    ) -> EditResult | None:
        """Apply validated field values (``None`` clears a field) to one contact; None when the shop has no
        such contact. ValidationError (nothing changes) when an identifier is an erased person's (rule 11),
        when the contact would be left with neither email nor phone, or when consent is given to a channel
        without its identifier."""
        values = {name: value for name, value in values.items() if name in EDITABLE_FIELDS}
        with self.contacts.db.write_transaction() as session:
            contact = _shop_contacts(session, shop_id, [contact_id])
            if not contact:
                return None
            before = contact[0]
            lock_identifiers(session, _identifier_keys(shop_id, [before], values))
            session.refresh(before, with_for_update=True)
            changed = _edit_changes(before, values)
            self._check_edit(session, shop_id, before, changed)
            now = self.contacts.clock()
            added_tags = [t for t in changed.get("tags", []) if t not in (before.tags or [])]
            _set_values(before, changed, Source.MERCHANT, now)
            pushes: set[int] = set()
            if changed:
                session.add(
                    ContactEvent(
                        shop_id=shop_id,
                        contact_id=before.id,
                        kind=EventKind.EDITED,
                        occurred_at=now,
                        data={"changed": sorted(changed), "actor": actor},
                    )
                )
                if _queue_platform_write(before, changed, added_tags):
                    pushes.add(before.id)
            reached: list[int] = []
            for channel, consent_field in rules.CONSENT_FIELDS.items():
                if changed.get(consent_field) == Consent.UNSUBSCRIBED:
                    others = self._unsubscribe_holders(session, shop_id, before, channel, actor, now)
                    reached += [other.id for other in others]
                    pushes |= {other.id for other in others if _queue_consent_write(other, consent_field)}
            session.flush()
            enqueue_pushes(session, shop_id, sorted(pushes), now)
            return EditResult(before.id, tuple(sorted(changed)), tuple(reached))

    def _check_edit(
        self, session: Session, shop_id: int, contact: Contact, changed: Mapping[str, Any]
    ) -> None:
        errors: dict[str, str] = {}
        new_emails = {changed["email"]} if changed.get("email") else set()
        new_phones = {changed["phone"]} if changed.get("phone") else set()
        # Rule 11: an erased identifier comes back only with the person's own new submission.
        suppressed = self.contacts._suppressed_identifiers(
            session, shop_id, new_emails, new_phones, lift=False
        )
        for kind, _ in suppressed:
            errors[kind] = (
                "belongs to a person who asked to be erased; only their own new submission can bring it back"
            )
        email = changed.get("email", contact.email)
        phone = changed.get("phone", contact.phone)
        if not email and not phone:
            errors.setdefault(
                "email" if "email" in changed else "phone", "a contact needs an email or a phone"
            )
        for channel, consent_field in rules.CONSENT_FIELDS.items():
            identifier = rules.CHANNEL_IDENTIFIER[channel]
            has_identifier = email if identifier == "email" else phone
            if changed.get(consent_field) == Consent.SUBSCRIBED and not has_identifier:
                errors[consent_field] = f"needs the contact's {identifier} to subscribe"
        if errors:
            raise ValidationError(errors)

    def _unsubscribe_holders(
        self, session: Session, shop_id: int, contact: Contact, channel: str, actor: str, now: datetime
    ) -> list[Contact]:
        """Rule 8: every other contact of the shop holding this contact's email (or phone) is unsubscribed."""
        value = getattr(contact, rules.CHANNEL_IDENTIFIER[channel])
        if not value:
            return []
        return unsubscribe_holders(
            session,
            shop_id,
            channel,
            value,
            source=Source.MERCHANT,
            now=now,
            event={"because": "identifier unsubscribed", "actor": actor},
            except_id=contact.id,
        )

    def set_consent(self, shop_id: int, ids: Sequence[int], channel: str, state: str, *, actor: str) -> int:
        """Set one channel's consent on the listed contacts of the shop (others' ids are ignored); an
        unsubscribe also reaches every contact holding their email or phone (rule 8). Subscribing needs the
        channel's identifier. Returns how many of the listed contacts changed."""
        consent_field = rules.CONSENT_FIELDS[channel]
        identifier = rules.CHANNEL_IDENTIFIER[channel]
        listed = set(ids)
        changed_listed: set[int] = set()
        for chunk in _chunks(sorted(listed), BULK_CHUNK):
            with self.contacts.db.write_transaction() as session:
                contacts = _shop_contacts(session, shop_id, chunk)
                if not contacts:
                    continue
                lock_identifiers(session, _identifier_keys(shop_id, contacts, {}))
                contacts = _shop_contacts(session, shop_id, chunk, for_update=True)
                now = self.contacts.clock()
                pushes: set[int] = set()
                for contact in contacts:
                    if getattr(contact, consent_field) == state:
                        continue
                    if state == Consent.SUBSCRIBED and not getattr(contact, identifier):
                        continue  # nothing to subscribe: a consent belongs to an email or a phone
                    _set_values(contact, {consent_field: state}, Source.MERCHANT, now)
                    changed_listed.add(contact.id)
                    session.add(
                        ContactEvent(
                            shop_id=shop_id,
                            contact_id=contact.id,
                            kind=EventKind.EDITED,
                            occurred_at=now,
                            data={"changed": [consent_field], "actor": actor, "bulk": True},
                        )
                    )
                    if _queue_consent_write(contact, consent_field):
                        pushes.add(contact.id)
                if state == Consent.UNSUBSCRIBED:
                    for contact in contacts:
                        for other in self._unsubscribe_holders(
                            session, shop_id, contact, channel, actor, now
                        ):
                            # A listed contact reached through another one changed all the same.
                            if other.id in listed:
                                changed_listed.add(other.id)
                            if _queue_consent_write(other, consent_field):
                                pushes.add(other.id)
                session.flush()
                enqueue_pushes(session, shop_id, sorted(pushes), now)
        return len(changed_listed)

    def delete(self, shop_id: int, ids: Sequence[int], *, actor: str) -> int:
        """Delete the listed contacts of the shop with their events and waiting platform writes (the
        foreign keys cascade); the platform customers are left alone. One audit row per contact. Returns how
        many were deleted; other shops' ids are ignored."""
        deleted = 0
        for chunk in _chunks(sorted(set(ids)), BULK_CHUNK):
            with self.contacts.db.write_transaction() as session:
                contacts = _shop_contacts(session, shop_id, chunk, for_update=True)
                if not contacts:
                    continue
                now = self.contacts.clock()
                session.add_all(
                    AuditLog(
                        shop_id=shop_id,
                        actor=actor,
                        action=CONTACT_DELETED,
                        contact_id=contact.id,
                        summary=_audit_summary(contact, bulk=len(ids) > 1),
                        occurred_at=now,
                    )
                    for contact in contacts
                )
                doomed = [contact.id for contact in contacts]
                session.flush()
                for contact in contacts:
                    session.expunge(contact)
                session.execute(sa.delete(Contact).where(Contact.shop_id == shop_id, Contact.id.in_(doomed)))
                deleted += len(doomed)
        return deleted


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _shop_contacts(
    session: Session, shop_id: int, ids: Sequence[int], *, for_update: bool = False
) -> list[Contact]:
    statement = (
        sa.select(Contact).where(Contact.shop_id == shop_id, Contact.id.in_(list(ids))).order_by(Contact.id)
    )
    if for_update:
        statement = statement.with_for_update()
    return list(session.scalars(statement))


def _identifier_keys(shop_id: int, contacts: Sequence[Contact], values: Mapping[str, Any]) -> list[int]:
    """The lock keys of the contacts' identifiers and of the ones an edit gives them."""
    keys = []
    for contact in contacts:
        for kind in ("email", "phone"):
            for value in (getattr(contact, kind), values.get(kind)):
                if value:
                    keys.append(identifier_lock_key(shop_id, kind, value))
    return keys


def _edit_changes(contact: Contact, values: Mapping[str, Any]) -> dict[str, Any]:
    """The given values that differ from the contact's. Clearing an email or phone also clears a
    ``subscribed`` or ``pending`` consent of its channel: there is nothing left to consent with (an
    ``unsubscribed`` stays: a refusal is kept)."""
    changed = {name: value for name, value in values.items() if _stored(contact, name) != value}
    for channel, consent_field in rules.CONSENT_FIELDS.items():
        identifier = rules.CHANNEL_IDENTIFIER[channel]
        cleared = identifier in changed and changed[identifier] is None and consent_field not in values
        if cleared and getattr(contact, consent_field) in (Consent.SUBSCRIBED, Consent.PENDING):
            changed[consent_field] = Consent.NOT_SUBSCRIBED
    return changed


def _stored(contact: Contact, name: str) -> Any:
    value = getattr(contact, name)
    return list(value or []) if name == "tags" else value


def _queue_platform_write(contact: Contact, changed: Mapping[str, Any], added_tags: Sequence[str]) -> bool:
    """Rule 9 for a merchant's edit: the changed fields and added tags become pending; True when a push is
    needed. A cleared value is not written (a platform write never erases a value, as a sync never does),
    removed tags stay on the platform customer (tags are added there, never replaced), and a contact kept
    in popsync on purpose (``local``: an import without the platform) stays local."""
    if contact.sync_status == SyncStatus.LOCAL:
        return False
    fields = [name for name in PLATFORM_FIELDS if name in changed and changed[name] is not None]
    if not fields and not added_tags:
        return False
    contact.pending_fields = sorted({*(contact.pending_fields or []), *fields})
    contact.pending_tags = list(dict.fromkeys([*(contact.pending_tags or []), *added_tags]))
    contact.sync_status = SyncStatus.PENDING
    return True


def _queue_consent_write(contact: Contact, consent_field: str) -> bool:
    return _queue_platform_write(contact, {consent_field: getattr(contact, consent_field)}, [])


def _audit_summary(contact: Contact, *, bulk: bool) -> dict[str, Any]:
    """What was deleted, without personal data: no email, phone, name or platform id."""
    return {
        "source": contact.source,
        "created_at": contact.created_at.isoformat(),
        "had_email": contact.email is not None,
        "had_phone": contact.phone is not None,
        "linked_to_platform": contact.platform_customer_id is not None,
        "sync_status": contact.sync_status,
        "bulk": bulk,
    }
