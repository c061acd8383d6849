"""Segments against a real database (SQLite and PostgreSQL): each condition on a seeded set of contacts, all
and any, combined with the list's search and channel; and, with hypothesis, the SQL a random segment
compiles to selects exactly the contacts a plain Python reading of the same conditions selects."""

from __future__ import annotations

import random
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.contacts import queries
from app.contacts.segments import Condition
from app.contacts.segments import SegmentSpec
from app.contacts.segments import compile_segment
from app.contacts.segments import count_contacts
from app.db import Database
from app.db import utcnow
from app.models import Contact
from app.models import ContactEvent
from app.models import Form
from app.models import Shop
from tests.conftest import add_api_key
from tests.conftest import add_shop

NOW = utcnow().replace(microsecond=0)
COUNTRIES = ("US", "FR", "DE")
TAGS = ("vip", "sale", "b2b", "vip2")  # "vip2" and "vip" tell containment from a substring match
CONSENTS = ("subscribed", "unsubscribed", "not_subscribed", "pending")
SOURCES = ("form", "open", "click", "import", "platform", "merchant")
STATUSES = ("pending", "synced", "conflict", "failed", "local")
GENDERS = ("female", "male", "other", "unspecified")
FORM_IDS = (3, 4)


@dataclass
class Person:
    """A seeded contact as the Python oracle reads it."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    email_consent: str = "not_subscribed"
    sms_consent: str = "not_subscribed"
    country: str | None = None
    gender: str | None = None
    birthday: date | None = None
    created_days_ago: float = 100.5
    updated_days_ago: float = 50.5
    source: str = "form"
    sync_status: str = "synced"
    tags: list[str] = field(default_factory=list)
    # (kind, days ago, form id or None)
    events: list[tuple[str, float, str | None]] = field(default_factory=list)
    id: int = 0


def seed(db: Database, shop_id: int, people: list[Person]) -> None:
    with db.write_transaction() as session:
        for person in people:
            contact = Contact(
                shop_id=shop_id,
                email=person.email,
                phone=person.phone,
                first_name=person.first_name,
                email_consent=person.email_consent,
                sms_consent=person.sms_consent,
                country=person.country,
                gender=person.gender,
                birthday=person.birthday,
                created_at=NOW - timedelta(days=person.created_days_ago),
                updated_at=NOW - timedelta(days=person.updated_days_ago),
                source=person.source,
                sync_status=person.sync_status,
                tags=list(person.tags),
                pending_fields=[],
                pending_tags=[],
            )
            session.add(contact)
            session.flush()
            person.id = contact.id
            for kind, days_ago, form_id in person.events:
                data: dict[str, Any] = (
                    {"form_id": form_id} if form_id is not None else {"page_url": "https://x/"}
                )
                session.add(
                    ContactEvent(
                        shop_id=shop_id,
                        contact_id=contact.id,
                        kind=kind,
                        occurred_at=NOW - timedelta(days=days_ago),
                        data=data,
                    )
                )


def holds(person: Person, condition: Condition) -> bool:
    """The oracle: one condition, read straight from the contract's words."""
    name, op, value = condition.field, condition.op, condition.value
    if name in ("email", "phone"):
        present = getattr(person, name) is not None
        return present if op == "present" else not present
    if name in ("email_consent", "sms_consent", "gender", "source", "sync_status"):
        same = getattr(person, name) == value
        return same if op == "is" else not same
    if name == "country":
        inside = person.country in value
        return inside if op == "in" else not inside
    if name == "birthday_month":
        return person.birthday is not None and person.birthday.month == value
    if name in ("created_at", "updated_at"):
        days_ago = person.created_days_ago if name == "created_at" else person.updated_days_ago
        return (days_ago <= value) == (op == "within_days")
    if name == "tag":
        return (value in person.tags) == (op == "has")
    if name == "form":
        submitted = any(k == "submitted" and f == str(value) for k, _, f in person.events)
        return submitted == (op == "submitted")
    if name in ("opened", "clicked"):
        happened = any(k == name and days <= value for k, days, _ in person.events)
        return happened == (op == "within_days")
    raise AssertionError(name)


def oracle(people: list[Person], spec: SegmentSpec) -> set[int]:
    def selected(person: Person) -> bool:
        if not spec.conditions:
            return True
        results = [holds(person, c) for c in spec.conditions]
        return all(results) if spec.match == "all" else any(results)

    return {p.id for p in people if selected(p)}


def selected_ids(db: Database, shop_id: int, spec: SegmentSpec, **filters: Any) -> set[int]:
    statement = queries.filtered(shop_id, segment=compile_segment(spec, NOW), **filters)
    with db.sessionmaker() as session:
        return set(session.scalars(statement.with_only_columns(Contact.id)))


def only(*conditions: Condition, match: str = "all") -> SegmentSpec:
    return SegmentSpec("s", match, conditions)


@pytest.fixture
def cast(db: Database, shop: Shop) -> dict[str, Person]:
    people = {
        "ann": Person(
            email="ann@example.com",
            first_name="Ann",
            email_consent="subscribed",
            country="US",
            gender="female",
            birthday=date(1990, 4, 1),
            created_days_ago=2.5,
            updated_days_ago=1.5,
            tags=["vip", "sale"],
            events=[("submitted", 2.5, "3"), ("opened", 1.5, None)],
        ),
        "bo": Person(
            phone="+14155552671",
            sms_consent="unsubscribed",
            country="FR",
            gender="male",
            birthday=date(1985, 12, 24),
            source="import",
            sync_status="local",
            tags=["vip2"],
            events=[("clicked", 10.5, None), ("submitted", 40.5, "4")],
        ),
        "cy": Person(
            email="cy@example.com",
            phone="+14155552672",
            email_consent="pending",
            source="open",
            sync_status="conflict",
            events=[("opened", 60.5, None), ("clicked", 2.5, None)],
        ),
        "dee": Person(
            email="dee@example.com", first_name="Dee", country="DE", gender="other", source="platform"
        ),
    }
    seed(db, shop.id, list(people.values()))
    # Another shop's twin of everyone: never in this shop's segments.
    seed(db, add_shop_of(db), [Person(**{**vars(p), "id": 0}) for p in people.values()])
    return people


def add_shop_of(db: Database) -> int:
    with db.write_transaction() as session:
        other = Shop(platform="shopify", domain="elsewhere.myshopify.com", platform_state={})
        session.add(other)
        session.flush()
        return other.id


@pytest.mark.parametrize(
    ("condition", "names"),
    [
        (Condition("email", "present"), {"ann", "cy", "dee"}),
        (Condition("email", "absent"), {"bo"}),
        (Condition("phone", "present"), {"bo", "cy"}),
        (Condition("phone", "absent"), {"ann", "dee"}),
        (Condition("email_consent", "is", "subscribed"), {"ann"}),
        (Condition("email_consent", "is_not", "not_subscribed"), {"ann", "cy"}),
        (Condition("sms_consent", "is", "unsubscribed"), {"bo"}),
        (Condition("country", "in", ("US", "FR")), {"ann", "bo"}),
        (Condition("country", "not_in", ("US", "FR")), {"cy", "dee"}),  # no country is "not in"
        (Condition("gender", "is", "female"), {"ann"}),
        (Condition("gender", "is_not", "female"), {"bo", "cy", "dee"}),
        (Condition("birthday_month", "is", 12), {"bo"}),
        (Condition("birthday_month", "is", 4), {"ann"}),
        (Condition("created_at", "within_days", 7), {"ann"}),
        (Condition("created_at", "not_within_days", 7), {"bo", "cy", "dee"}),
        (Condition("updated_at", "within_days", 2), {"ann"}),
        (Condition("source", "is", "import"), {"bo"}),
        (Condition("source", "is_not", "form"), {"bo", "cy", "dee"}),
        (Condition("form", "submitted", 3), {"ann"}),
        (Condition("form", "submitted", 4), {"bo"}),
        (Condition("form", "not_submitted", 3), {"bo", "cy", "dee"}),
        (Condition("tag", "has", "vip"), {"ann"}),  # not bo's "vip2"
        (Condition("tag", "has_not", "vip"), {"bo", "cy", "dee"}),
        (Condition("tag", "has", "vip2"), {"bo"}),
        (Condition("opened", "within_days", 7), {"ann"}),
        (Condition("opened", "within_days", 90), {"ann", "cy"}),
        (Condition("opened", "not_within_days", 7), {"bo", "cy", "dee"}),
        (Condition("clicked", "within_days", 7), {"cy"}),
        (Condition("clicked", "within_days", 30), {"bo", "cy"}),
        (Condition("sync_status", "is", "local"), {"bo"}),
        (Condition("sync_status", "is_not", "synced"), {"bo", "cy"}),
    ],
)
def test_each_condition(
    db: Database, shop: Shop, cast: dict[str, Person], condition: Condition, names: set[str]
) -> None:
    expected = {cast[name].id for name in names}
    assert selected_ids(db, shop.id, only(condition)) == expected
    assert oracle(list(cast.values()), only(condition)) == expected  # the oracle agrees with the table


def test_all_any_and_the_list_filters(db: Database, shop: Shop, cast: dict[str, Person]) -> None:
    ids = {name: person.id for name, person in cast.items()}
    vip_or_french = (Condition("tag", "has", "vip"), Condition("country", "in", ("FR",)))
    assert selected_ids(db, shop.id, only(*vip_or_french, match="any")) == {ids["ann"], ids["bo"]}
    assert selected_ids(db, shop.id, only(*vip_or_french, match="all")) == set()
    assert selected_ids(db, shop.id, only()) == set(ids.values())
    assert selected_ids(db, shop.id, only(match="any")) == set(ids.values())
    anyone = only(Condition("email", "present"), Condition("phone", "present"), match="any")
    assert selected_ids(db, shop.id, anyone, channel="sms") == {ids["bo"], ids["cy"]}
    assert selected_ids(db, shop.id, anyone, q="dee") == {ids["dee"]}
    assert selected_ids(db, shop.id, anyone, q="dee", channel="sms") == set()
    with db.sessionmaker() as session:
        assert count_contacts(session, shop.id, compile_segment(anyone, NOW)) == 4


def random_people(seed_value: int, n: int = 60) -> list[Person]:
    rng = random.Random(seed_value)

    def maybe(values: tuple[Any, ...]) -> Any:
        return rng.choice((None, *values))

    people = []
    for i in range(n):
        events = [
            (
                rng.choice(("submitted", "opened", "clicked", "edited")),
                rng.randrange(0, 120) + 0.5,
                str(rng.choice(FORM_IDS)) if rng.random() < 0.7 else None,
            )
            for _ in range(rng.randrange(0, 4))
        ]
        people.append(
            Person(
                email=f"p{i}@example.com" if rng.random() < 0.7 else None,
                phone=f"+1415555{i:04d}" if rng.random() < 0.5 else None,
                email_consent=rng.choice(CONSENTS),
                sms_consent=rng.choice(CONSENTS),
                country=maybe(COUNTRIES),
                gender=maybe(GENDERS),
                birthday=date(1980 + rng.randrange(30), rng.randrange(1, 13), rng.randrange(1, 29))
                if rng.random() < 0.6
                else None,
                created_days_ago=rng.randrange(0, 400) + 0.5,
                updated_days_ago=rng.randrange(0, 100) + 0.5,
                source=rng.choice(SOURCES),
                sync_status=rng.choice(STATUSES),
                tags=rng.sample(TAGS, rng.randrange(0, 3)),
                events=events,
            )
        )
    return people


_DAYS = st.sampled_from((1, 3, 7, 30, 60, 90, 365))
CONDITIONS = st.one_of(
    st.builds(Condition, st.sampled_from(("email", "phone")), st.sampled_from(("present", "absent"))),
    st.builds(
        Condition,
        st.sampled_from(("email_consent", "sms_consent")),
        st.sampled_from(("is", "is_not")),
        st.sampled_from(CONSENTS),
    ),
    st.builds(
        Condition,
        st.just("country"),
        st.sampled_from(("in", "not_in")),
        st.lists(st.sampled_from((*COUNTRIES, "GB")), min_size=1, max_size=3, unique=True).map(tuple),
    ),
    st.builds(Condition, st.just("gender"), st.sampled_from(("is", "is_not")), st.sampled_from(GENDERS)),
    st.builds(Condition, st.just("birthday_month"), st.just("is"), st.integers(1, 12)),
    st.builds(
        Condition,
        st.sampled_from(("created_at", "updated_at", "opened", "clicked")),
        st.sampled_from(("within_days", "not_within_days")),
        _DAYS,
    ),
    st.builds(Condition, st.just("source"), st.sampled_from(("is", "is_not")), st.sampled_from(SOURCES)),
    st.builds(
        Condition, st.just("sync_status"), st.sampled_from(("is", "is_not")), st.sampled_from(STATUSES)
    ),
    st.builds(
        Condition,
        st.just("form"),
        st.sampled_from(("submitted", "not_submitted")),
        st.sampled_from((3, 4, 5)),
    ),
    st.builds(Condition, st.just("tag"), st.sampled_from(("has", "has_not")), st.sampled_from((*TAGS, "vi"))),
)
SEGMENTS = st.builds(
    SegmentSpec, st.just("s"), st.sampled_from(("all", "any")), st.lists(CONDITIONS, max_size=4).map(tuple)
)


@pytest.fixture
def crowd(db: Database, shop: Shop) -> list[Person]:
    people = random_people(7)
    seed(db, shop.id, people)
    seed(db, add_shop_of(db), random_people(8, 20))
    return people


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=SEGMENTS)
def test_sql_selects_what_the_conditions_say(
    db: Database, shop: Shop, crowd: list[Person], spec: SegmentSpec
) -> None:
    assert selected_ids(db, shop.id, spec) == oracle(crowd, spec)


# --- the HTTP routes -----------------------------------------------------------------------------------


def test_segment_routes_count_filter_and_stay_in_the_shop(
    app: Flask, client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str], cast: dict[str, Person]
) -> None:
    with db.write_transaction() as session:
        form = Form(
            shop_id=shop.id, name="F", template="newsletter", fields=[], texts={}, trigger={}, targeting={}
        )
        session.add(form)
        session.flush()
        form_id = form.id
    body = {
        "name": "Reachable",
        "match": "any",
        "conditions": [
            {"field": "email_consent", "op": "is", "value": "subscribed"},
            {"field": "phone", "op": "present"},
        ],
    }
    created = client.post("/api/v1/segments", json=body, headers=auth)
    assert created.status_code == 201
    segment = created.json
    assert segment["count"] == 3  # ann; bo and cy have phones
    assert segment["conditions"][1] == {"field": "phone", "op": "present", "value": None}

    listed = client.get(f"/api/v1/contacts?segment={segment['id']}", headers=auth).json["contacts"]
    assert {c["id"] for c in listed} == {cast["ann"].id, cast["bo"].id, cast["cy"].id}
    narrowed = client.get(f"/api/v1/contacts?segment={segment['id']}&channel=email&q=cy", headers=auth)
    assert [c["id"] for c in narrowed.json["contacts"]] == [cast["cy"].id]

    patched = client.patch(
        f"/api/v1/segments/{segment['id']}",
        json={
            "match": "all",
            "conditions": [
                *body["conditions"],
                {"field": "form", "op": "not_submitted", "value": str(form_id)},
            ],
        },
        headers=auth,
    )
    assert patched.status_code == 200
    assert (patched.json["match"], patched.json["count"]) == ("all", 0)
    bad = client.patch(
        f"/api/v1/segments/{segment['id']}",
        json={"conditions": [{"field": "form", "op": "submitted", "value": 999999}, {"field": "tag"}]},
        headers=auth,
    )
    assert bad.status_code == 422
    assert bad.json["errors"] == {"conditions[1].op": "must be has or has_not for tag"}
    bad = client.patch(
        f"/api/v1/segments/{segment['id']}",
        json={"conditions": [{"field": "form", "op": "submitted", "value": 999999}]},
        headers=auth,
    )
    assert bad.json["errors"] == {"conditions[0].value": "no such form"}
    assert [s["id"] for s in client.get("/api/v1/segments", headers=auth).json["segments"]] == [segment["id"]]
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=auth).json["count"] == 0

    other = add_shop(app, "other.myshopify.com")
    other_auth = {"Authorization": f"Bearer {add_api_key(app, other)}"}
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=other_auth).status_code == 404
    assert (
        client.patch(f"/api/v1/segments/{segment['id']}", json={"name": "x"}, headers=other_auth).status_code
        == 404
    )
    assert client.delete(f"/api/v1/segments/{segment['id']}", headers=other_auth).status_code == 404
    assert client.get(f"/api/v1/contacts?segment={segment['id']}", headers=other_auth).status_code == 404
    assert client.get("/api/v1/segments", headers=other_auth).json == {"segments": []}
    assert client.get("/api/v1/contacts?segment=abc", headers=auth).json["errors"] == {
        "segment": "must be a segment id"
    }

    assert client.delete(f"/api/v1/segments/{segment['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=auth).status_code == 404
    assert client.post("/api/v1/segments", data="x", headers=auth).status_code == 400
    assert client.post("/api/v1/segments", json={"name": "x"}).status_code == 401


def test_counts_are_live(client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str]) -> None:
    segment = client.post(
        "/api/v1/segments",
        json={"name": "FR", "conditions": [{"field": "country", "op": "in", "value": ["fr"]}]},
        headers=auth,
    ).json
    assert segment["count"] == 0
    assert segment["conditions"] == [{"field": "country", "op": "in", "value": ["FR"]}]
    seed(db, shop.id, [Person(email="x@example.com", country="FR")])
    assert client.get(f"/api/v1/segments/{segment['id']}", headers=auth).json["count"] == 1


def test_conditions_compile_on_this_database(db: Database) -> None:
    # Sanity: the has_tag construct renders for the dialect under test without raw SQL.
    with db.sessionmaker() as session:
        dialect = session.get_bind().dialect
    statement = sa.select(Contact.id).where(
        compile_segment(only(Condition("tag", "has", "vip")), datetime.now(NOW.tzinfo))
    )
    compiled = str(statement.compile(dialect=dialect))
    assert ("@>" in compiled) == (dialect.name == "postgresql")
    assert ("json_each" in compiled) == (dialect.name == "sqlite")
