"""Rule 9: write one contact's pending changes to its platform customer, through the PlatformClient protocol.

    linked customer (if it still exists) → else one found by the contact's identifiers that rule 4 would
    accept → else a new one; identifiers held by other customers are left out and reported as conflicts.

It always looks before it creates, so a push whose answer was lost (or whose worker died) and is run again
finds the customer it made the first time instead of making a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from app.platforms.base import WRITABLE_FIELDS
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerWrite
from app.platforms.base import IdentifierTaken
from app.platforms.base import PlatformClient
from app.platforms.base import PlatformCustomer
from app.platforms.base import PushOutcome
from app.platforms.base import PushResult

CONSENT_IDENTIFIER = {"email_consent": "email", "sms_consent": "phone"}


@dataclass(frozen=True)
class ContactSnapshot:
    """What a push needs of a contact, read before the platform calls (no transaction held across them)."""

    email: str | None
    phone: str | None
    platform_customer_id: str | None
    values: Mapping[str, Any]  # the pending fields and their current values
    tags: tuple[str, ...]  # the pending tags
    consent_updated_at: datetime | None = None
    consent_source: str | None = None
    # Everything the contact holds for the platform: a new customer gets all of it, not only what changed.
    all_values: Mapping[str, Any] = field(default_factory=dict)
    all_tags: tuple[str, ...] = ()


def _acceptable(customer: PlatformCustomer, snapshot: ContactSnapshot) -> bool:
    """Rule 4 on the platform side: a customer whose other identifier is non-empty and different is
    someone else."""
    email_ok = not customer.email or not snapshot.email or customer.email.lower() == snapshot.email
    phone_ok = not customer.phone or not snapshot.phone or customer.phone == snapshot.phone
    return email_ok and phone_ok


def _holders(client: PlatformClient, snapshot: ContactSnapshot) -> dict[str, PlatformCustomer]:
    found: dict[str, PlatformCustomer] = {}
    if snapshot.email:
        customer = client.find_customer(email=snapshot.email)
        if customer is not None:
            found["email"] = customer
    if snapshot.phone:
        customer = client.find_customer(phone=snapshot.phone)
        if customer is not None:
            found["phone"] = customer
    return found


def _write_without(
    snapshot: ContactSnapshot, left_out: Sequence[str], target: PlatformCustomer | None
) -> CustomerWrite:
    """The write: the pending values (everything, for a new customer), minus identifiers another customer
    holds and any consent whose identifier the customer will not have (rule 8: a consent belongs to the
    email or phone it was given with, never to another one the customer happens to hold)."""
    source = snapshot.all_values if target is None else snapshot.values
    values = {name: value for name, value in source.items() if name in WRITABLE_FIELDS and value is not None}
    for identifier in left_out:
        values.pop(identifier, None)
    for consent, identifier in CONSENT_IDENTIFIER.items():
        ours = getattr(snapshot, identifier)
        theirs = getattr(target, identifier) if target is not None else None
        same = ours is not None and theirs is not None and _same(identifier, theirs, ours)
        if consent in values and identifier not in values and not same:
            values.pop(consent)
    return CustomerWrite(
        values=values,
        consent_updated_at=snapshot.consent_updated_at,
        consent_source=snapshot.consent_source,
    )


def _same(identifier: str, theirs: str, ours: str) -> bool:
    return theirs.lower() == ours if identifier == "email" else theirs == ours


def push_contact(client: PlatformClient, snapshot: ContactSnapshot) -> PushResult:
    """Write the snapshot's pending values and tags; RetryLater/AuthFailed/FailedForGood propagate."""
    target: PlatformCustomer | None = None
    if snapshot.platform_customer_id:
        target = client.fetch_customer(snapshot.platform_customer_id)  # None: deleted, write as unlinked
    taken: dict[str, str] = {}  # identifiers the platform refused mid-write, and who holds them
    for _ in range(3):  # an identifier found taken mid-write is left out and the write tried again
        try:
            return _push_once(client, snapshot, target, taken)
        except IdentifierTaken as error:
            holders = _holders(client, snapshot)
            fresh = [f for f in error.fields if f in holders and f not in taken]
            if not fresh:
                return PushResult(
                    PushOutcome.FAILED,
                    detail=f"the platform says the {' and '.join(error.fields)} is taken, "
                    "but no customer with it could be found",
                )
            for name in fresh:
                taken[name] = holders[name].id
        except CustomerGone:
            target = None
    return PushResult(PushOutcome.FAILED, detail="the platform kept refusing the identifiers")


def _push_once(
    client: PlatformClient, snapshot: ContactSnapshot, target: PlatformCustomer | None, taken: dict[str, str]
) -> PushResult:
    holders = _holders(client, snapshot)
    if target is None:
        for identifier in ("email", "phone"):
            candidate = holders.get(identifier)
            if candidate is not None and _acceptable(candidate, snapshot):
                target = candidate
                break
    # Recomputed on every try: a holder that turned out to be the target is no conflict.
    conflicts = {name: holder.id for name, holder in holders.items()}
    conflicts.update(taken)
    if target is not None:
        conflicts = {name: holder for name, holder in conflicts.items() if holder != target.id}
    write = _write_without(snapshot, list(conflicts), target)
    if target is None and not any(i in write.values for i in ("email", "phone")):
        # A new customer with neither identifier would be nobody: write nothing, name who holds them.
        return PushResult(
            PushOutcome.NOTHING, conflicts=conflicts, detail=_conflict_detail(conflicts, nothing_written=True)
        )
    if target is None:
        tags = snapshot.all_tags
        customer = client.create_customer(write, tags)
        outcome = PushOutcome.CREATED
    else:
        tags = snapshot.tags
        customer = client.update_customer(target, write) if write.values else target
        missing_tags = [tag for tag in tags if tag not in customer.tags]
        if missing_tags:
            customer = client.add_tags(customer, missing_tags)
        outcome = PushOutcome.UPDATED
    written = frozenset(write.values)
    if conflicts:
        return PushResult(
            PushOutcome.CONFLICT,
            customer,
            conflicts,
            detail=_conflict_detail(conflicts),
            written=written,
            tags_written=tuple(tags),
        )
    return PushResult(
        outcome, customer, detail=f"{outcome.value} {customer.id}", written=written, tags_written=tuple(tags)
    )


def _conflict_detail(conflicts: Mapping[str, str], nothing_written: bool = False) -> str:
    held = "; ".join(
        f"the {field} belongs to another customer, {holder}" for field, holder in conflicts.items()
    )
    if nothing_written:
        return f"nothing written: {held}"
    return f"written without it: {held}"
