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

_CONSENT_IDENTIFIER = {"email_consent": "email", "sms_consent": "phone"}


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
    """The write, minus identifiers another customer holds and the consent that needs them."""
    values = {name: value for name, value in snapshot.values.items() if name in WRITABLE_FIELDS}
    for identifier in left_out:
        values.pop(identifier, None)
    for consent, identifier in _CONSENT_IDENTIFIER.items():
        has_identifier = (identifier in values) or (target is not None and getattr(target, identifier))
        if consent in values and not has_identifier:
            values.pop(consent)
    return CustomerWrite(
        values=values,
        consent_updated_at=snapshot.consent_updated_at,
        consent_source=snapshot.consent_source,
    )


def push_contact(client: PlatformClient, snapshot: ContactSnapshot) -> PushResult:
    """Write the snapshot's pending values and tags; RetryLater/AuthFailed/FailedForGood propagate."""
    target: PlatformCustomer | None = None
    if snapshot.platform_customer_id:
        target = client.fetch_customer(snapshot.platform_customer_id)  # None: deleted, write as unlinked
    conflicts: dict[str, str] = {}
    for _ in range(3):  # an identifier found taken mid-write is left out and the write tried again
        try:
            return _push_once(client, snapshot, target, conflicts)
        except IdentifierTaken as taken:
            holders = _holders(client, snapshot)
            fresh = [f for f in taken.fields if f in holders and f not in conflicts]
            if not fresh:
                raise
            for field in fresh:
                conflicts[field] = holders[field].id
        except CustomerGone:
            target = None
    return PushResult(
        PushOutcome.FAILED, conflicts=conflicts, detail="the platform kept refusing the identifiers"
    )


def _push_once(
    client: PlatformClient,
    snapshot: ContactSnapshot,
    target: PlatformCustomer | None,
    conflicts: dict[str, str],
) -> PushResult:
    holders = _holders(client, snapshot)
    if target is None:
        for identifier in ("email", "phone"):
            candidate = holders.get(identifier)
            if candidate is not None and _acceptable(candidate, snapshot):
                target = candidate
                break
    for identifier, holder in holders.items():
        if target is None or holder.id != target.id:
            conflicts.setdefault(identifier, holder.id)
    identifiers = [i for i in ("email", "phone") if getattr(snapshot, i)]
    if target is None and identifiers and all(i in conflicts for i in identifiers):
        return PushResult(
            PushOutcome.NOTHING,
            conflicts=dict(conflicts),
            detail=_conflict_detail(conflicts, nothing_written=True),
        )
    write = _write_without(snapshot, list(conflicts), target)
    if target is None:
        customer = client.create_customer(write, snapshot.tags)
        outcome = PushOutcome.CREATED
    else:
        customer = client.update_customer(target, write) if write.values else target
        missing_tags = [tag for tag in snapshot.tags if tag not in customer.tags]
        if missing_tags:
            customer = client.add_tags(customer, missing_tags)
        outcome = PushOutcome.UPDATED
    if conflicts:
        return PushResult(PushOutcome.CONFLICT, customer, dict(conflicts), detail=_conflict_detail(conflicts))
    return PushResult(outcome, customer, detail=f"{outcome.value} {customer.id}")


def _conflict_detail(conflicts: Mapping[str, str], nothing_written: bool = False) -> str:
    held = "; ".join(
        f"the {field} belongs to another customer, {holder}" for field, holder in conflicts.items()
    )
    if nothing_written:
        return f"nothing written: {held}"
    return f"written without it: {held}"
