"""Tables only. Behaviour lives in the services (``app/contacts/service.py`` and friends).

Every schema change here is an Alembic migration in ``migrations/versions``; a test checks they agree.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from app.db import Base
from app.db import JSONDocument
from app.db import UTCDateTime
from app.db import utcnow
from app.enums import Consent
from app.enums import OutboxStatus
from app.enums import SyncStatus

# BIGINT ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY (which is 64-bit anyway).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(sa.String(16))
    domain: Mapped[str] = mapped_column(sa.String(255), unique=True)
    # ISO 3166-1 alpha-2 region in which national phone numbers are read; None: numbers need a country code.
    region: Mapped[str | None] = mapped_column(sa.String(2))
    name: Mapped[str | None] = mapped_column(sa.String(255))
    # Platform tokens, sealed with app.crypto (never stored or logged in the clear).
    access_token: Mapped[str | None] = mapped_column(sa.Text)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token: Mapped[str | None] = mapped_column(sa.Text)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scopes: Mapped[str | None] = mapped_column(sa.String(1024))
    needs_reauth: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # What a platform client remembers about the shop between pushes (e.g. the birthday metafield
    # definition was enabled); never tokens.
    platform_state: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the shop's daily jobs (reconciliation, webhook re-check) are next due; the scheduler moves it.
    daily_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    uninstalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    domains: Mapped[list[ShopDomain]] = relationship(
        back_populates="shop", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def installed(self) -> bool:
        return self.uninstalled_at is None


class ShopDomain(Base):
    """A storefront origin of a shop (platform domain, primary and alias domains): CORS allows these."""

    __tablename__ = "shop_domains"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    origin: Mapped[str] = mapped_column(sa.String(255), unique=True)

    shop: Mapped[Shop] = relationship(back_populates="domains")


class ApiKey(Base):
    """A shop's admin API key (``psk_…``); only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The first characters, so a merchant can tell keys apart without the key.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def _where_present(column: str) -> sa.Index:
    """``(shop_id, column)`` for the contacts that have a value there (migration 0011): every query it serves
    looks a value up, and a contact without one would only be an entry for each write to maintain."""
    condition = sa.text(f"{column} IS NOT NULL")
    return sa.Index(
        f"ix_contacts_shop_id_{column}", "shop_id", column, postgresql_where=condition, sqlite_where=condition
    )


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        sa.Index("ix_contacts_shop_id_email", "shop_id", "email"),
        _where_present("phone"),
        _where_present("platform_customer_id"),
        # The list's order: most recently updated first, id breaking ties (keyset pagination).
        sa.Index("ix_contacts_shop_id_updated_at_id", "shop_id", "updated_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(sa.String(320))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    first_name: Mapped[str | None] = mapped_column(sa.String(255))
    last_name: Mapped[str | None] = mapped_column(sa.String(255))
    birthday: Mapped[date | None] = mapped_column(sa.Date)
    gender: Mapped[str | None] = mapped_column(sa.String(16))
    country: Mapped[str | None] = mapped_column(sa.String(2))
    email_consent: Mapped[str] = mapped_column(sa.String(16), default=Consent.NOT_SUBSCRIBED)
    email_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_consent_source: Mapped[str | None] = mapped_column(sa.String(16))
    sms_consent: Mapped[str] = mapped_column(sa.String(16), default=Consent.NOT_SUBSCRIBED)
    sms_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sms_consent_source: Mapped[str | None] = mapped_column(sa.String(16))
    tags: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    source: Mapped[str] = mapped_column(sa.String(16))
    platform_customer_id: Mapped[str | None] = mapped_column(sa.String(128))
    # The platform's updatedAt of the last change applied from it or written to it (echo detection).
    platform_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sync_status: Mapped[str] = mapped_column(sa.String(16), default=SyncStatus.LOCAL)
    sync_detail: Mapped[str | None] = mapped_column(sa.Text)
    # Fields that syncs changed and that are not yet written to the platform customer (rule 9).
    pending_fields: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    # Tags that syncs added and that are not yet on the platform customer (added there, never replacing).
    pending_tags: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Moves only when the contact's own fields change, not its sync bookkeeping.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    events: Mapped[list[ContactEvent]] = relationship(
        back_populates="contact",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="desc(ContactEvent.occurred_at), desc(ContactEvent.id)",
    )


# The contact list's search indexes (migration 0010) live only in the migrations: a GIN expression index
# on PostgreSQL, an FTS5 table (with its shadow tables and triggers) on SQLite. The models cannot declare
# them for both databases, so the model-to-migration comparison (migrations/env.py and
# tests/integration/test_migrations.py) leaves these names out.
SEARCH_INDEX_OBJECTS = frozenset(
    {
        "ix_contacts_search_trgm",
        "contacts_search",
        "contacts_search_data",
        "contacts_search_idx",
        "contacts_search_content",
        "contacts_search_docsize",
        "contacts_search_config",
    }
)


def include_in_schema_comparison(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object`` hook: everything but the search objects above, found in the database."""
    return not (reflected and name in SEARCH_INDEX_OBJECTS)


class ContactEvent(Base):
    __tablename__ = "contact_events"
    __table_args__ = (
        sa.Index("ix_contact_events_contact_id_occurred_at", "contact_id", "occurred_at"),
        sa.Index("ix_contact_events_shop_id_kind_occurred_at", "shop_id", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The contact's shop, to scope queries; no foreign key (migration 0011): the contact's own cascade
    # removes its events, and a check per event written cost every import.
    shop_id: Mapped[int] = mapped_column(BigId)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What happened: the action, the fields changed, and for submissions the consent evidence.
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)

    contact: Mapped[Contact] = relationship(back_populates="events")


class OutboxItem(Base):
    """A platform write (or other background job) committed with the change that caused it."""

    __tablename__ = "outbox_items"
    __table_args__ = (
        sa.Index("ix_outbox_items_status_due_at", "status", "due_at"),
        sa.Index("ix_outbox_items_shop_id_status", "shop_id", "status"),
        # At most one waiting push per contact: later syncs join it, and the worker writes once.
        sa.Index(
            "uq_outbox_items_pending_push",
            "contact_id",
            unique=True,
            postgresql_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
            sqlite_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default=OutboxStatus.PENDING)
    # Lower runs first: uninstall, erasure and webhook work go ahead of bulk pushes.
    priority: Mapped[int] = mapped_column(sa.SmallInteger, default=100)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# The kinds of identifier an erasure list holds. Every look-up names them: the list's only index is
# (shop_id, kind, digest), and a look-up by shop and digest alone reads every entry of the shop (a scan of
# the whole table on PostgreSQL once a shop has erased tens of thousands of people: 7 ms a submission).
SUPPRESSION_KINDS = ("email", "phone")


class Suppression(Base):
    """An erased person's identifier, kept only as a keyed hash (rule 11); ``kind`` is one of
    ``SUPPRESSION_KINDS``."""

    __tablename__ = "suppressions"
    __table_args__ = (sa.UniqueConstraint("shop_id", "kind", "digest"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(8))
    digest: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def listed_for_erasure(shop_id: Any, digests: Any) -> sa.ColumnElement[bool]:
    """The erasure-list entries of ``shop_id`` (a value, a column or a bind) among ``digests`` (a list or an
    expanding bind), as the index is probed: by shop, every kind, and digest."""
    return sa.and_(
        Suppression.shop_id == shop_id,
        Suppression.kind.in_(SUPPRESSION_KINDS),
        Suppression.digest.in_(digests),
    )


class PlatformBudget(Base):
    """A shop's platform rate budget as a leaky bucket, shared by every worker process (rule: the
    platform's limit is per app and store, so per-process counters would multiply with the workers)."""

    __tablename__ = "platform_budgets"

    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)
    capacity: Mapped[float] = mapped_column(sa.Float)
    available: Mapped[float] = mapped_column(sa.Float)
    restore_rate: Mapped[float] = mapped_column(sa.Float)  # units per second
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """A platform webhook, recorded before it is answered and handled by the worker; kept once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.UniqueConstraint("platform", "webhook_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(sa.String(16))
    webhook_id: Mapped[str] = mapped_column(sa.String(128))
    topic: Mapped[str] = mapped_column(sa.String(64))
    shop_domain: Mapped[str] = mapped_column(sa.String(255))
    shop_id: Mapped[int | None] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DataRequest(Base):
    """A person's data, gathered for a privacy request (``customers/data_request``), for the merchant to
    download from the admin."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the platform asked about (customer id, email, phone) and what popsync holds of that person.
    subject: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    export: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


class CustomerPull(Base):
    """A run that reads the platform's customers into the contact list: the backfill on install (every
    customer) or the daily reconciliation (those updated since the last one). Resumable: ``cursor`` says
    where the next step starts, and the merchant sees its progress."""

    __tablename__ = "customer_pulls"
    __table_args__ = (sa.Index("ix_customer_pulls_shop_id_kind_status", "shop_id", "kind", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))  # backfill | reconcile
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")  # queued|running|done|failed
    # Customers updated at or after this are read (reconcile); None reads them all (backfill).
    updated_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where the next step starts: the platform's page cursor, or the bulk export and its lines read.
    cursor: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    total: Mapped[int | None] = mapped_column(sa.Integer)
    processed: Mapped[int] = mapped_column(sa.Integer, default=0)
    created: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedSignature(Base):
    """A signed request already honoured (SHOPLINE's signed app open): refused if it comes again while its
    signature is still within its time window. Rows past ``expires_at`` are deleted by the daily job."""

    __tablename__ = "used_signatures"
    __table_args__ = (sa.UniqueConstraint("purpose", "digest"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(32))
    digest: Mapped[str] = mapped_column(sa.String(64))  # SHA-256 of the signature, never the request
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Form(Base):
    """A popup form of a shop: what it asks, what it says (per locale), when and where it opens."""

    __tablename__ = "forms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    template: Mapped[str] = mapped_column(sa.String(16))  # newsletter | email_sms | profile
    # [{"name": "email", "required": true}, {"name": "birthday", "format": "date"}, …]
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    # {"en": {"title": …, "submit": …}, "fr": {…}}
    texts: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    default_locale: Mapped[str] = mapped_column(sa.String(16), default="en")
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    targeting: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    discount_code: Mapped[str | None] = mapped_column(sa.String(64))
    # Added to every contact the form collects, and to its platform customer (rule 9).
    tag: Mapped[str | None] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FormDailyStat(Base):
    """A form's views and submissions on one UTC day; counted with an upsert, exact under concurrency."""

    __tablename__ = "form_daily_stats"
    __table_args__ = (sa.UniqueConstraint("form_id", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    form_id: Mapped[int] = mapped_column(sa.ForeignKey("forms.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(sa.Date)
    views: Mapped[int] = mapped_column(sa.Integer, default=0)
    submissions: Mapped[int] = mapped_column(sa.Integer, default=0)


class RateLimitCounter(Base):
    """A fixed-window request counter shared by every process (storefront rate limits). ``key`` names the
    limit and who is counted; rows of windows long past are deleted opportunistically."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    count: Mapped[int] = mapped_column(sa.Integer, default=0)


class TrackingHit(Base):
    """One open or click of a tracking link, as the pixel or the redirect recorded it (append-only; the
    request inserts one row and answers). The worker syncs the recipient from it (app/tracking/drain.py),
    links the hit to the contact, and clears the token it no longer needs."""

    __tablename__ = "tracking_hits"
    __table_args__ = (
        sa.Index("ix_tracking_hits_shop_id_occurred_at", "shop_id", "occurred_at"),
        # The worker's queue: only hits not yet synced, so the index stays small however many are kept.
        sa.Index(
            "ix_tracking_hits_pending",
            "id",
            postgresql_where=sa.text("processed_at IS NULL"),
            sqlite_where=sa.text("processed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(8))  # open | click
    message_id: Mapped[str] = mapped_column(sa.String(255))
    # The sealed token (reveals nothing without SECRET_KEY) until the worker has synced the hit.
    token: Mapped[str | None] = mapped_column(sa.Text)
    # human | apple_mpp | google_image_proxy | yahoo_proxy | bot (app/tracking/agents.py)
    agent: Mapped[str] = mapped_column(sa.String(24))
    machine: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    client_address: Mapped[str | None] = mapped_column(sa.String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    contact_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )


class TrackingSync(Base):
    """The one sync an open (or a click) of a message caused for a recipient: the unique key makes "once
    per message and recipient" exact, whichever worker gets there first."""

    __tablename__ = "tracking_syncs"
    __table_args__ = (sa.UniqueConstraint("shop_id", "kind", "message_id", "recipient_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(8))
    message_id: Mapped[str] = mapped_column(sa.String(255))
    # A keyed hash of the channel and identifiers (never the identifiers themselves).
    recipient_key: Mapped[str] = mapped_column(sa.String(64))
    # Kept when the contact is deleted: the same message opened again does not bring it back.
    contact_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Import(Base):
    """A merchant's CSV import (app/imports.py): the upload waits in the instance folder, the worker streams
    it through the sync rules in batches. ``processed`` moves in the same transaction as each batch, so a
    worker that dies mid-import is resumed after the last committed batch without counting twice."""

    __tablename__ = "imports"
    __table_args__ = (sa.Index("ix_imports_shop_id_id", "shop_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")  # queued|running|done|failed
    filename: Mapped[str | None] = mapped_column(sa.String(255))
    # Where the upload waits until the import is done (removed then); never its content.
    path: Mapped[str | None] = mapped_column(sa.Text)
    write_platform: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    processed: Mapped[int] = mapped_column(sa.Integer, default=0)
    created: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated: Mapped[int] = mapped_column(sa.Integer, default=0)
    skipped: Mapped[int] = mapped_column(sa.Integer, default=0)
    error_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # The first errors ({"row", "message"}); every row's outcome is in the import's batches.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    detail: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImportBatch(Base):
    """One committed batch of an import: each row's outcome, for the per-row report."""

    __tablename__ = "import_batches"
    __table_args__ = (sa.UniqueConstraint("import_id", "first_row"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(sa.ForeignKey("imports.id", ondelete="CASCADE"))
    first_row: Mapped[int] = mapped_column(sa.Integer)
    # [[row, outcome, message], ...]; outcome: created | updated | skipped | error.
    entries: Mapped[list[list[Any]]] = mapped_column(JSONDocument, default=list)


class Segment(Base):
    """A saved filter of a shop's contacts: conditions (``app/contacts/segments.py``) matched all or any."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    match: Mapped[str] = mapped_column(sa.String(8), default="all")  # all | any
    # [{"field": "country", "op": "in", "value": ["US", "CA"]}, …], validated before it is stored.
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditLog(Base):
    """Who did what to a shop's data through the admin (today: contact deletions). Never personal data: the
    actor is an API key's prefix or a Shopify user id, and the summary holds no email, phone or name."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_shop_id_occurred_at", "shop_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(sa.String(255))  # "api key psk_abc123" | "shopify user 42"
    action: Mapped[str] = mapped_column(sa.String(32))  # e.g. "contact.deleted"
    # No foreign key: the row outlives the contact it names.
    contact_id: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
