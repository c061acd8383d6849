"""The words stored in the database and spoken in the API, in one place (pure: rules import them)."""

from enum import StrEnum


class Platform(StrEnum):
    SHOPIFY = "shopify"
    SHOPLINE = "shopline"


class Consent(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    PENDING = "pending"


class SyncStatus(StrEnum):
    PENDING = "pending"
    SYNCED = "synced"
    CONFLICT = "conflict"
    FAILED = "failed"
    LOCAL = "local"


class Source(StrEnum):
    """Where a contact, or one change to it, came from."""

    FORM = "form"
    OPEN = "open"
    CLICK = "click"
    IMPORT = "import"
    PLATFORM = "platform"
    MERCHANT = "merchant"
    # The recipient's own unsubscribe link (app/tracking/unsubscribe.py); only ever a consent source.
    UNSUBSCRIBE_LINK = "unsubscribe_link"


class EventKind(StrEnum):
    SUBMITTED = "submitted"
    OPENED = "opened"
    CLICKED = "clicked"
    IMPORTED = "imported"
    MIRRORED = "mirrored"
    EDITED = "edited"
    UNSUBSCRIBED = "unsubscribed"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class OutboxKind(StrEnum):
    PUSH_CONTACT = "push_contact"
    IDENTIFY_CUSTOMER = "identify_customer"
    WEBHOOK = "webhook"
    PULL_CUSTOMERS = "pull_customers"  # a step of a backfill or reconciliation (app/pulls.py)
    CHECK_WEBHOOKS = "check_webhooks"  # SHOPLINE's daily webhook subscription re-check
    IMPORT_CONTACTS = "import_contacts"  # a step of a merchant's CSV import (app/imports.py)
