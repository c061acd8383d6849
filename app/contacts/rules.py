"""The sync rules (CONTRACT.md, "The sync rules", 1-8): which contact a collected record lands on and what
changes there. Pure: no I/O, no clock, no ORM. ``service.py`` loads the candidates and applies the decision.

Candidates are every contact of the shop holding the collected email or the collected phone. The decision
names the target (or a new contact), the field values that change on it, and the other contacts whose
consent an unsubscribe also reaches (rule 8: it applies to every contact holding that identifier).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.enums import Consent

# Fields a sync may set on a contact, in the order the platform write and the events list them.
PROFILE_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "gender", "country")
CONSENT_FIELDS = {"email": "email_consent", "sms": "sms_consent"}
CHANNEL_IDENTIFIER = {"email": "email", "sms": "phone"}


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    SKIP = "skip"
    # Rule 1: nothing identifying was collected, but a verified customer id was: the worker fetches that
    # customer and syncs again with its email and phone as the identifiers.
    IDENTIFY = "identify"


class ConsentIntent(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class Collected:
    """The non-empty, normalised fields of one submission, open, click or import row."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    birthday: date | None = None
    gender: str | None = None
    country: str | None = None
    email_consent: ConsentIntent | None = None
    sms_consent: ConsentIntent | None = None
    tags: tuple[str, ...] = ()
    # Names sealed in a tracking link: from the sender's list, so they only fill empty names (rule 6).
    link_first_name: str | None = None
    link_last_name: str | None = None
    # A platform customer id the platform itself vouched for (Shopify's signed logged_in_customer_id).
    customer_id: str | None = None
    # An import never re-subscribes an unsubscribed contact; a ticked box in a form is a new consent.
    may_resubscribe: bool = True

    @property
    def identifiers(self) -> tuple[tuple[str, str], ...]:
        pairs = (("email", self.email), ("phone", self.phone))
        return tuple((kind, value) for kind, value in pairs if value)

    def consent_intent(self, channel: str) -> ConsentIntent | None:
        return self.email_consent if channel == "email" else self.sms_consent


@dataclass(frozen=True)
class Candidate:
    """What the rules need to know of an existing contact."""

    id: int
    updated_at: datetime
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    birthday: date | None = None
    gender: str | None = None
    country: str | None = None
    email_consent: str = Consent.NOT_SUBSCRIBED
    sms_consent: str = Consent.NOT_SUBSCRIBED
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    target_id: int | None = None
    # Field -> new value on the target (for CREATE, every value the new contact starts with).
    changes: Mapping[str, Any] = field(default_factory=dict)
    # Other contacts holding an unsubscribed identifier: (contact id, channel), rule 8.
    unsubscribe_others: tuple[tuple[int, str], ...] = ()
    # The tags this record adds to the target (they are what goes to the platform, never the whole list).
    added_tags: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes) or bool(self.unsubscribe_others)


def decide(collected: Collected, candidates: Iterable[Candidate]) -> Decision:
    """Apply rules 1-8 to one collected record and the contacts holding its email or phone."""
    if not collected.email and not collected.phone:
        if collected.customer_id:
            return Decision(Action.IDENTIFY, "no email or phone collected; the logged-in customer identifies")
        return Decision(Action.SKIP, "no email or phone collected")

    # Rule 5's order: most recently updated first, then the lowest id. Sorting here makes the decision
    # independent of the order the candidates were loaded in.
    ordered = sorted(candidates, key=lambda c: (-c.updated_at.timestamp(), c.id))
    target, reason = _match(collected, ordered)
    unsubscribe_others = _unsubscribe_others(collected, ordered, exclude=target.id if target else None)
    if target is None:
        values = _new_values(collected)
        return Decision(
            Action.CREATE,
            reason,
            changes=values,
            unsubscribe_others=unsubscribe_others,
            added_tags=tuple(values.get("tags", ())),
        )
    changes = _changes(collected, target)
    return Decision(
        Action.UPDATE,
        reason,
        target_id=target.id,
        changes=changes,
        unsubscribe_others=unsubscribe_others,
        added_tags=tuple(t for t in changes.get("tags", ()) if t not in target.tags),
    )


def _match(collected: Collected, ordered: Sequence[Candidate]) -> tuple[Candidate | None, str]:
    email, phone = collected.email, collected.phone
    if not ordered:  # the usual case in an import of new people: the reasons below, without the steps
        if email and phone:
            return None, "no contact has this email or phone"
        return None, "no contact has this email" if email else "no contact has this phone"
    if email and phone:
        steps = (
            ("email and phone both match", lambda c: c.email == email and c.phone == phone),
            ("email matches a contact without a phone", lambda c: c.email == email and not c.phone),
            ("phone matches a contact without an email", lambda c: c.phone == phone and not c.email),
        )
        for reason, qualifies in steps:
            for candidate in ordered:
                if qualifies(candidate):
                    return candidate, reason
        if any(c.email == email or c.phone == phone for c in ordered):
            return None, "every contact with this email or phone has a different other identifier"
        return None, "no contact has this email or phone"
    if email:
        for candidate in ordered:
            if candidate.email == email:
                return candidate, "email matches"
        return None, "no contact has this email"
    for candidate in ordered:
        if candidate.phone == phone:
            return candidate, "phone matches"
    return None, "no contact has this phone"


def _new_values(collected: Collected) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        value = getattr(collected, name)
        if value is not None:
            values[name] = value
    if "first_name" not in values and collected.link_first_name:
        values["first_name"] = collected.link_first_name
    if "last_name" not in values and collected.link_last_name:
        values["last_name"] = collected.link_last_name
    if collected.tags:
        values["tags"] = list(dict.fromkeys(collected.tags))
    for channel, consent_field in CONSENT_FIELDS.items():
        new_state = _consent_after(collected, channel, Consent.NOT_SUBSCRIBED)
        if new_state is not None:
            values[consent_field] = new_state
    return values


def _changes(collected: Collected, target: Candidate) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        value = getattr(collected, name)
        current = getattr(target, name)
        if value is None or value == current:
            continue
        if name == "gender" and value == "unspecified" and current:
            continue  # "unspecified" never replaces a stated gender
        changes[name] = value
    for name, link_value in (
        ("first_name", collected.link_first_name),
        ("last_name", collected.link_last_name),
    ):
        if link_value and name not in changes and not getattr(target, name):
            changes[name] = link_value
    added = [tag for tag in dict.fromkeys(collected.tags) if tag not in target.tags]
    if added:
        changes["tags"] = [*target.tags, *added]
    for channel, consent_field in CONSENT_FIELDS.items():
        new_state = _consent_after(collected, channel, getattr(target, consent_field))
        if new_state is not None:
            changes[consent_field] = new_state
    return changes


def _consent_after(collected: Collected, channel: str, current: str) -> str | None:
    """Rule 8 for one channel of one contact: the new state, or None when it does not change."""
    intent = collected.consent_intent(channel)
    # A box only speaks for the identifier collected with it: a ticked SMS box without a phone is nothing.
    if intent is None or not getattr(collected, CHANNEL_IDENTIFIER[channel]):
        return None
    if intent is ConsentIntent.UNSUBSCRIBE:
        return Consent.UNSUBSCRIBED if current != Consent.UNSUBSCRIBED else None
    if current == Consent.SUBSCRIBED:
        return None
    if current == Consent.UNSUBSCRIBED and not collected.may_resubscribe:
        return None
    return Consent.SUBSCRIBED


def _unsubscribe_others(
    collected: Collected, ordered: Sequence[Candidate], exclude: int | None
) -> tuple[tuple[int, str], ...]:
    others: list[tuple[int, str]] = []
    for channel, consent_field in CONSENT_FIELDS.items():
        if collected.consent_intent(channel) is not ConsentIntent.UNSUBSCRIBE:
            continue
        identifier = CHANNEL_IDENTIFIER[channel]
        value = getattr(collected, identifier)
        if not value:
            continue
        for candidate in sorted(ordered, key=lambda c: c.id):
            if (
                candidate.id != exclude
                and getattr(candidate, identifier) == value
                and getattr(candidate, consent_field) != Consent.UNSUBSCRIBED
            ):
                others.append((candidate.id, channel))
    return tuple(others)


def display_name(first_name: str | None, last_name: str | None, email: str | None) -> str | None:
    """Rule 7: the collected names, else the email's prefix, else nothing. Never written to the platform."""
    name = " ".join(part for part in (first_name, last_name) if part)
    if name:
        return name
    if email:
        return email.split("@", 1)[0]
    return None
