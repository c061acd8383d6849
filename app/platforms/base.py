"""The one protocol the worker talks to, whichever platform it drives (Shopify or SHOPLINE).

Values cross this boundary in popsync's own words (the Contact's field names, E.164 phones, ISO dates,
``subscribed``/``unsubscribed``/… consent); each client maps them to its platform's formats. Clients never
sleep and never retry by themselves: they raise ``RetryLater`` with the wait, and the worker decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from enum import StrEnum
from typing import Any
from typing import Protocol

# The values a write may carry (rule 9), in popsync's words. "country" goes only to a customer without an
# address; "tags" are never part of a write (they are added with ``add_tags``).
WRITABLE_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "gender",
    "country",
    "email_consent",
    "sms_consent",
)


@dataclass(frozen=True)
class PlatformCustomer:
    """A platform customer as popsync sees it."""

    id: str  # as the platform writes it: a Shopify GID, a SHOPLINE id
    email: str | None = None
    phone: str | None = None  # E.164
    first_name: str | None = None
    last_name: str | None = None
    birthday: date | None = None
    gender: str | None = None  # female, male, other, unspecified
    country: str | None = None  # the default address's ISO country code
    has_address: bool = False
    email_consent: str | None = None  # subscribed, unsubscribed, not_subscribed, pending
    sms_consent: str | None = None
    tags: tuple[str, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True)
class CustomerWrite:
    """What one push writes: ``values`` maps WRITABLE_FIELDS names to values; consent carries its time."""

    values: Mapping[str, Any] = field(default_factory=dict)
    consent_updated_at: datetime | None = None
    # The form or source that collected the consent, kept on our side as evidence; platforms that have a
    # "collected from" field get it, Shopify has none.
    consent_source: str | None = None


class PlatformError(Exception):
    """Base of everything a client raises; ``str()`` is safe to show a merchant (no tokens, no PII)."""


class RetryLater(PlatformError):
    """Throttled, 5xx, timeout, connection lost: try again after ``seconds``."""

    def __init__(self, reason: str, seconds: float, *, throttled: bool = False) -> None:
        super().__init__(reason)
        self.seconds = max(0.0, seconds)
        self.throttled = throttled


class AuthFailed(PlatformError):
    """The token was refused (revoked, expired and not refreshable): the shop needs re-authorisation."""


class FailedForGood(PlatformError):
    """The platform refused the write for a reason retrying will not change (validation, 4xx)."""


class IdentifierTaken(PlatformError):
    """The platform allows one customer per email and one per phone; this one is held by another."""

    def __init__(self, fields: Sequence[str], message: str = "") -> None:
        super().__init__(message or f"{', '.join(fields)} already taken")
        self.fields = tuple(fields)


class CustomerGone(PlatformError):
    """The customer no longer exists on the platform (deleted)."""


class PlatformClient(Protocol):
    """One shop's customers on one platform. Every method may raise the errors above."""

    def find_customer(self, *, email: str | None = None, phone: str | None = None) -> PlatformCustomer | None:
        """The customer holding exactly this email, or else this phone (exact match, never fuzzy)."""
        ...

    def fetch_customer(self, customer_id: str) -> PlatformCustomer | None:
        """The customer with this id, or None when it no longer exists."""
        ...

    def create_customer(self, write: CustomerWrite, tags: Sequence[str]) -> PlatformCustomer:
        """Create a customer with these values and tags; IdentifierTaken names what another holds."""
        ...

    def update_customer(self, existing: PlatformCustomer, write: CustomerWrite) -> PlatformCustomer:
        """Write these values to an existing customer (consent included, tags and addresses untouched
        except a country for a customer without an address); CustomerGone if it was deleted."""
        ...

    def add_tags(self, customer: PlatformCustomer, tags: Sequence[str]) -> PlatformCustomer:
        """Add tags, never removing any."""
        ...


@dataclass(frozen=True)
class CustomerPage:
    """One page of a shop's customers, as ``CustomerReader.list_customers`` answers it."""

    customers: tuple[PlatformCustomer, ...]
    next_cursor: str | None  # opaque to callers; None on the last page


class BulkExportStatus(StrEnum):
    RUNNING = "running"  # created or running: poll again later
    COMPLETED = "completed"
    FAILED = "failed"  # failed, canceled or expired: ``error`` says why


@dataclass(frozen=True)
class BulkExport:
    """A platform-side export of every customer (Shopify's bulk operation) and how far it got."""

    id: str
    status: BulkExportStatus
    url: str | None = None  # the JSONL result when completed; None when there were no customers
    object_count: int = 0
    error: str | None = None


class CustomerReader(Protocol):
    """Reads every customer of one shop, for the backfill on install and the daily reconciliation.

    Paging is driven by the caller, one call per page, so that a job can stop between pages (a
    ``RetryLater``, a deploy) and go on later: ``next_cursor`` is a plain string the caller keeps in the
    database and hands back unchanged, and it stays valid across restarts of the process. A customer
    changed while the caller pages may be answered twice (on its old and on its new position), never
    skipped; callers treat the pages as "at least once". Every method may raise the errors above.
    """

    def list_customers(
        self, *, updated_since: datetime | None = None, cursor: str | None = None
    ) -> CustomerPage:
        """One page (at most 250) of the shop's customers, updated at or after ``updated_since`` when
        given, oldest change first where the platform allows it. ``cursor`` is the previous page's
        ``next_cursor`` (the filter travels inside it: ``updated_since`` is ignored with a cursor)."""
        ...


class BulkCustomerReader(CustomerReader, Protocol):
    """A ``CustomerReader`` whose platform can also export every customer at once (Shopify's bulk
    operations), which is how a large shop's backfill avoids paging through the rate limit.

    The flow: ``start_bulk_export`` once, ``bulk_export`` until it is no longer RUNNING (minutes to hours
    on a large shop: poll every few seconds to a minute, storing the id between polls), then
    ``read_bulk_export`` on its ``url``. A read cut short (``RetryLater`` mid-way) resumes with ``skip``
    set to the number of customers already read: every line of popsync's export is one customer.
    """

    def start_bulk_export(self) -> BulkExport:
        """Ask the platform to export every customer; RetryLater while another export is running."""
        ...

    def bulk_export(self, operation_id: str) -> BulkExport:
        """Where the export ``operation_id`` stands now."""
        ...

    def read_bulk_export(self, url: str, *, skip: int = 0) -> Iterator[PlatformCustomer]:
        """The exported customers, streamed from ``url`` after the first ``skip`` lines."""
        ...


class PushOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    CONFLICT = "conflict"
    NOTHING = "nothing"  # both identifiers held by other customers: nothing written
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class PushResult:
    """What one push of one contact came to; the worker turns it into the contact's sync status."""

    outcome: PushOutcome
    customer: PlatformCustomer | None = None
    # identifier -> the id of the customer holding it (rule 9's conflict), for sync_detail
    conflicts: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    detail: str = ""
    # What actually went to the platform: only these leave the contact's pending changes.
    written: frozenset[str] = frozenset()
    tags_written: tuple[str, ...] = ()
