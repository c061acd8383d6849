"""The sync rules as plain tables (one row per branch of the product guide) and as properties."""

from __future__ import annotations

import dataclasses
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.contacts.rules import Action
from app.contacts.rules import Candidate
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.rules import decide
from app.contacts.rules import display_name

pytestmark = pytest.mark.nodb

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B, C = "a@example.com", "+14155552671", "+14155552672"
A2 = "other@example.com"


def contact(
    id: int, email: str | None = None, phone: str | None = None, age: int = 0, **values: Any
) -> Candidate:
    """A candidate updated ``age`` minutes before the newest one."""
    return Candidate(id=id, updated_at=T0 - timedelta(minutes=age), email=email, phone=phone, **values)


# --- which contact: every branch of "Rules for Contact Synchronization" -----------------------------

MATCHING = [
    # (guide branch, collected, existing contacts, expected action, expected target id)
    ("no email or phone: nothing is synced", Collected(first_name="Ann"), [contact(1, A)], Action.SKIP, None),
    (
        "no email or phone, logged-in customer: the worker identifies",
        Collected(first_name="Ann", customer_id="gid://shopify/Customer/1"),
        [],
        Action.IDENTIFY,
        None,
    ),
    ("only email, contact with it exists: update it", Collected(email=A), [contact(1, A)], Action.UPDATE, 1),
    ("only email, none has it: create", Collected(email=A), [contact(1, A2)], Action.CREATE, None),
    (
        "only phone, contact with it exists: update it",
        Collected(phone=B),
        [contact(1, None, B)],
        Action.UPDATE,
        1,
    ),
    ("only phone, none has it: create", Collected(phone=B), [contact(1, None, C)], Action.CREATE, None),
    ("email A and phone B, none has either: create", Collected(email=A, phone=B), [], Action.CREATE, None),
    (
        "email A and phone B, a contact has both: update it",
        Collected(email=A, phone=B),
        [contact(1, A, None), contact(2, A, B, age=5), contact(3, None, B)],
        Action.UPDATE,
        2,
    ),
    (
        "email A and phone B, a contact has A and no phone: it gains B",
        Collected(email=A, phone=B),
        [contact(1, A, None), contact(3, None, B)],
        Action.UPDATE,
        1,
    ),
    (
        "email A and phone B, a contact has B and no email: it gains A",
        Collected(email=A, phone=B),
        [contact(3, None, B), contact(4, A, C)],
        Action.UPDATE,
        3,
    ),
    (
        "email A and phone B, the contact with A has another phone: create",
        Collected(email=A, phone=B),
        [contact(1, A, C)],
        Action.CREATE,
        None,
    ),
    (
        "email A and phone B, the contact with B has another email: create",
        Collected(email=A, phone=B),
        [contact(1, A2, B)],
        Action.CREATE,
        None,
    ),
    (
        "email A and phone B, both have different other values: create",
        Collected(email=A, phone=B),
        [contact(1, A, C), contact(2, A2, B)],
        Action.CREATE,
        None,
    ),
    (
        "rule 5: several qualify, the most recently updated wins",
        Collected(email=A),
        [contact(1, A, age=10), contact(2, A, C, age=1), contact(3, A, age=3)],
        Action.UPDATE,
        2,
    ),
    (
        "rule 5: same update time, the lowest id wins",
        Collected(email=A),
        [contact(7, A), contact(4, A), contact(9, A)],
        Action.UPDATE,
        4,
    ),
    (
        "rule 5 applies within a step: step 2 before recency",
        Collected(email=A, phone=B),
        [contact(1, A, None, age=10), contact(2, None, B, age=0)],
        Action.UPDATE,
        1,
    ),
]


@pytest.mark.parametrize(
    ("branch", "collected", "existing", "action", "target"), MATCHING, ids=[m[0] for m in MATCHING]
)
def test_matching(
    branch: str, collected: Collected, existing: list[Candidate], action: Action, target: int | None
) -> None:
    decision = decide(collected, existing)
    assert decision.action is action, decision.reason
    assert decision.target_id == target


def test_gaining_an_identifier_is_a_change() -> None:
    decision = decide(Collected(email=A, phone=B), [contact(1, A)])
    assert decision.changes == {"phone": B}
    decision = decide(Collected(email=A, phone=B), [contact(1, None, B)])
    assert decision.changes == {"email": A}


# --- what changes: rules 6, 7 and 8 --------------------------------------------------------------------

VALUES = [
    (
        "collected values are added",
        Collected(email=A, first_name="Ann", birthday=date(1990, 4, 1), country="US"),
        {},
        {"first_name": "Ann", "birthday": date(1990, 4, 1), "country": "US"},
    ),
    (
        "collected values replace stored ones",
        Collected(email=A, first_name="Anne"),
        {"first_name": "Ann"},
        {"first_name": "Anne"},
    ),
    ("a value not collected is never erased", Collected(email=A), {"first_name": "Ann", "country": "US"}, {}),
    ("the same value is no change", Collected(email=A, first_name="Ann"), {"first_name": "Ann"}, {}),
    (
        "unspecified never replaces a stated gender",
        Collected(email=A, gender="unspecified"),
        {"gender": "female"},
        {},
    ),
    (
        "unspecified fills an empty gender",
        Collected(email=A, gender="unspecified"),
        {},
        {"gender": "unspecified"},
    ),
    (
        "a stated gender replaces unspecified",
        Collected(email=A, gender="male"),
        {"gender": "unspecified"},
        {"gender": "male"},
    ),
    (
        "tags are added",
        Collected(email=A, tags=("vip", "popup")),
        {"tags": ("vip",)},
        {"tags": ["vip", "popup"]},
    ),
    ("tags are never removed", Collected(email=A, tags=("vip",)), {"tags": ("vip", "old")}, {}),
    (
        "link names fill empty names",
        Collected(email=A, link_first_name="Ann", link_last_name="Lee"),
        {},
        {"first_name": "Ann", "last_name": "Lee"},
    ),
    (
        "link names never overwrite",
        Collected(email=A, link_first_name="X", link_last_name="Lee"),
        {"first_name": "Ann"},
        {"last_name": "Lee"},
    ),
    (
        "collected names win over link names",
        Collected(email=A, first_name="Ann", link_first_name="X"),
        {"first_name": "Old"},
        {"first_name": "Ann"},
    ),
    (
        "a ticked email box subscribes",
        Collected(email=A, email_consent=ConsentIntent.SUBSCRIBE),
        {},
        {"email_consent": "subscribed"},
    ),
    (
        "already subscribed: no change",
        Collected(email=A, email_consent=ConsentIntent.SUBSCRIBE),
        {"email_consent": "subscribed"},
        {},
    ),
    (
        "a ticked SMS box without a phone changes nothing",
        Collected(email=A, sms_consent=ConsentIntent.SUBSCRIBE),
        {"phone": B},
        {},
    ),
    (
        "a ticked box re-subscribes after an unsubscribe (a new consent)",
        Collected(email=A, email_consent=ConsentIntent.SUBSCRIBE),
        {"email_consent": "unsubscribed"},
        {"email_consent": "subscribed"},
    ),
    (
        "an import never re-subscribes",
        Collected(email=A, email_consent=ConsentIntent.SUBSCRIBE, may_resubscribe=False),
        {"email_consent": "unsubscribed"},
        {},
    ),
    (
        "an unsubscribe unsubscribes",
        Collected(email=A, email_consent=ConsentIntent.UNSUBSCRIBE),
        {"email_consent": "subscribed"},
        {"email_consent": "unsubscribed"},
    ),
    (
        "SMS consent by phone",
        Collected(email=A, phone=B, sms_consent=ConsentIntent.SUBSCRIBE),
        {"phone": B},
        {"sms_consent": "subscribed"},
    ),
]


@pytest.mark.parametrize(("case", "collected", "stored", "changes"), VALUES, ids=[v[0] for v in VALUES])
def test_changes(case: str, collected: Collected, stored: dict[str, Any], changes: dict[str, Any]) -> None:
    stored = {"email": A, **stored}
    decision = decide(collected, [contact(1, **stored)])
    assert decision.action is Action.UPDATE
    assert dict(decision.changes) == changes


def test_new_contact_starts_with_every_collected_value() -> None:
    decision = decide(
        Collected(
            email=A,
            phone=B,
            first_name="Ann",
            gender="female",
            tags=("popup",),
            email_consent=ConsentIntent.SUBSCRIBE,
            sms_consent=ConsentIntent.SUBSCRIBE,
        ),
        [],
    )
    assert decision.action is Action.CREATE
    assert decision.changes == {
        "email": A,
        "phone": B,
        "first_name": "Ann",
        "gender": "female",
        "tags": ["popup"],
        "email_consent": "subscribed",
        "sms_consent": "subscribed",
    }


def test_new_contact_from_an_import_unsubscribe_is_unsubscribed() -> None:
    decision = decide(Collected(email=A, email_consent=ConsentIntent.UNSUBSCRIBE, may_resubscribe=False), [])
    assert decision.changes["email_consent"] == "unsubscribed"


def test_an_unsubscribe_reaches_every_contact_holding_the_identifier() -> None:
    existing = [
        contact(1, A, B, email_consent="subscribed"),
        contact(2, A, C, email_consent="subscribed", age=3),
        contact(3, A2, B, sms_consent="subscribed"),
        contact(4, A, None, email_consent="unsubscribed"),
    ]
    decision = decide(
        Collected(
            email=A, phone=B, email_consent=ConsentIntent.UNSUBSCRIBE, sms_consent=ConsentIntent.UNSUBSCRIBE
        ),
        existing,
    )
    assert decision.target_id == 1
    assert decision.changes == {"email_consent": "unsubscribed", "sms_consent": "unsubscribed"}
    assert set(decision.unsubscribe_others) == {(2, "email"), (3, "sms")}


@pytest.mark.parametrize(
    ("first", "last", "email", "name"),
    [
        ("Ann", "Lee", A, "Ann Lee"),
        (None, "Lee", A, "Lee"),
        (None, None, "ann.lee@example.com", "ann.lee"),
        (None, None, None, None),
    ],
)
def test_display_name_falls_back_to_the_email_prefix(
    first: str | None, last: str | None, email: str | None, name: str | None
) -> None:
    assert display_name(first, last, email) == name


# --- properties ----------------------------------------------------------------------------------------

emails = st.sampled_from(["a@example.com", "b@example.com", "c@example.com"])
phones = st.sampled_from(["+14155552671", "+14155552672", "+447911123456"])
names = st.sampled_from(["Ann", "Bo", "Cy"])
intents = st.sampled_from([None, ConsentIntent.SUBSCRIBE, ConsentIntent.UNSUBSCRIBE])
consents = st.sampled_from(["subscribed", "unsubscribed", "not_subscribed"])

collected_records = st.builds(
    Collected,
    email=st.none() | emails,
    phone=st.none() | phones,
    first_name=st.none() | names,
    last_name=st.none() | names,
    birthday=st.none() | st.just(date(1990, 4, 1)) | st.just(date(1985, 1, 2)),
    gender=st.none() | st.sampled_from(["female", "male", "other", "unspecified"]),
    country=st.none() | st.sampled_from(["US", "GB"]),
    email_consent=intents,
    sms_consent=intents,
    tags=st.lists(st.sampled_from(["vip", "popup", "sale"]), max_size=2).map(tuple),
    link_first_name=st.none() | names,
    link_last_name=st.none() | names,
    may_resubscribe=st.booleans(),
)


@st.composite
def contact_lists(draw: st.DrawFn) -> list[Candidate]:
    count = draw(st.integers(0, 5))
    ids = draw(st.lists(st.integers(1, 50), min_size=count, max_size=count, unique=True))
    return [
        Candidate(
            id=i,
            updated_at=T0 - timedelta(minutes=draw(st.integers(0, 3))),
            email=draw(st.none() | emails),
            phone=draw(st.none() | phones),
            first_name=draw(st.none() | names),
            last_name=draw(st.none() | names),
            gender=draw(st.none() | st.sampled_from(["female", "unspecified"])),
            email_consent=draw(consents),
            sms_consent=draw(consents),
            tags=tuple(draw(st.lists(st.sampled_from(["vip", "old"]), max_size=2, unique=True))),
        )
        for i in ids
    ]


def apply(decision_contacts: list[Candidate], collected: Collected) -> list[Candidate]:
    """A reference model of the service: apply a decision to an in-memory list of contacts."""
    decision = decide(collected, decision_contacts)
    by_id = {c.id: c for c in decision_contacts}
    later = T0 + timedelta(hours=1)
    if decision.action is Action.CREATE:
        new_id = max(by_id, default=0) + 1
        values = dict(decision.changes)
        values["tags"] = tuple(values.get("tags", ()))
        by_id[new_id] = Candidate(id=new_id, updated_at=later, **values)
    elif decision.action is Action.UPDATE and decision.changes:
        values = dict(decision.changes)
        if "tags" in values:
            values["tags"] = tuple(values["tags"])
        by_id[decision.target_id] = dataclasses.replace(by_id[decision.target_id], updated_at=later, **values)  # type: ignore[index]
    for other, channel in decision.unsubscribe_others:
        field = "email_consent" if channel == "email" else "sms_consent"
        by_id[other] = dataclasses.replace(by_id[other], **{field: "unsubscribed"})
    return list(by_id.values())


@settings(max_examples=300, deadline=None)
@given(collected=collected_records, existing=contact_lists())
def test_the_same_record_twice_changes_nothing_the_second_time(
    collected: Collected, existing: list[Candidate]
) -> None:
    once = apply(existing, collected)
    second = decide(collected, once)
    assert second.action in (Action.UPDATE, Action.SKIP, Action.IDENTIFY), second
    assert not second.changed


@settings(max_examples=300, deadline=None)
@given(collected=collected_records, existing=contact_lists())
def test_no_record_ever_erases_a_stored_value(collected: Collected, existing: list[Candidate]) -> None:
    after = {c.id: c for c in apply(existing, collected)}
    for before in existing:
        now = after[before.id]
        for field in ("email", "phone", "first_name", "last_name", "birthday", "gender", "country"):
            if getattr(before, field) is not None:
                assert getattr(now, field) is not None, field
        assert set(before.tags) <= set(now.tags)


@settings(max_examples=300, deadline=None)
@given(collected=collected_records, existing=contact_lists(), data=st.data())
def test_the_decision_does_not_depend_on_candidate_order(
    collected: Collected, existing: list[Candidate], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(existing))
    assert decide(collected, shuffled) == decide(collected, existing)


@settings(max_examples=200, deadline=None)
@given(collected=collected_records, existing=contact_lists())
def test_opens_and_links_never_change_consent(collected: Collected, existing: list[Candidate]) -> None:
    """A record carrying no consent intent (an open, a click) never changes anyone's consent."""
    quiet = dataclasses.replace(collected, email_consent=None, sms_consent=None)
    decision = decide(quiet, existing)
    assert "email_consent" not in decision.changes
    assert "sms_consent" not in decision.changes
    assert not decision.unsubscribe_others


@settings(max_examples=200, deadline=None)
@given(collected=collected_records, existing=contact_lists())
def test_the_target_holds_what_was_collected(collected: Collected, existing: list[Candidate]) -> None:
    """Rule 4 never lets a contact's identifier be overwritten: the target has or gains each identifier."""
    decision = decide(collected, existing)
    if decision.action is not Action.UPDATE:
        return
    target = next(c for c in existing if c.id == decision.target_id)
    for field in ("email", "phone"):
        collected_value = getattr(collected, field)
        if collected_value:
            assert getattr(target, field) in (None, collected_value)
