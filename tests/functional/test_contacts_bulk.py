"""POST /api/v1/contacts/consent, DELETE /api/v1/contacts/<id> and POST /api/v1/contacts/delete: counts,
rule 8's reach, other shops' ids ignored, and deletions in the audit log with who did them."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.models import AuditLog
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import Shop
from tests.conftest import add_shop
from tests.functional.test_contacts_edit import events
from tests.functional.test_contacts_edit import make
from tests.functional.test_contacts_edit import row
from tests.functional.test_contacts_edit import settle
from tests.functional.test_contacts_edit import waiting_pushes

API_KEY = "bulk-test-client-id"
SECRET = "bulk-test-client-secret-0123456789abcdef"


@pytest.fixture
def app_extra() -> dict[str, Any]:
    return {"SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": SECRET}


def session_token(shop: Shop, sub: str = "73") -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://{shop.domain}/admin",
        "dest": f"https://{shop.domain}",
        "aud": API_KEY,
        "sub": sub,
        "exp": now + 60,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": "j1",
        "sid": "s1",
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def count(db: Database, model: Any, *where: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


def consent(client: FlaskClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/contacts/consent", json=body, headers=auth)


def test_bulk_subscribe_counts_the_listed_contacts_that_changed(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    with_email = make(service, shop, email="ann@example.com")
    phone_only = make(service, shop, phone="+14155552671")
    already = make(service, shop, email="bo@example.com", email_consent=ConsentIntent.SUBSCRIBE)
    settle(db, with_email, phone_only, already)

    response = consent(
        client, auth, ids=[with_email, phone_only, already, 999999], channel="email", state="subscribed"
    )

    assert response.status_code == 200
    assert response.json == {"updated": 1}  # no email to subscribe; already subscribed; nobody
    assert row(db, with_email).email_consent == "subscribed"
    assert row(db, phone_only).email_consent == "not_subscribed"
    assert row(db, with_email).pending_fields == ["email_consent"]
    assert waiting_pushes(db, with_email) == 1
    assert waiting_pushes(db, already) == 0
    assert [e.kind for e in events(db, with_email)] == ["submitted", "edited"]
    again = consent(client, auth, ids=[with_email], channel="email", state="subscribed")
    assert again.json == {"updated": 0}


def test_bulk_unsubscribe_reaches_every_holder(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    listed = make(
        service, shop, phone="+14155552671", email="a@example.com", sms_consent=ConsentIntent.SUBSCRIBE
    )
    holder = make(
        service, shop, phone="+14155552671", email="b@example.com", sms_consent=ConsentIntent.SUBSCRIBE
    )
    both_listed = make(service, shop, phone="+14155552673", sms_consent=ConsentIntent.SUBSCRIBE)
    settle(db, listed, holder, both_listed)

    response = consent(client, auth, ids=[listed, both_listed], channel="sms", state="unsubscribed")

    assert response.json == {"updated": 2}
    for contact_id in (listed, holder, both_listed):
        assert row(db, contact_id).sms_consent == "unsubscribed"
        assert waiting_pushes(db, contact_id) == 1
    assert events(db, holder)[-1].kind == "unsubscribed"
    assert events(db, holder)[-1].data["because"] == "identifier unsubscribed"


def test_a_listed_contact_reached_through_another_counts_once(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    first = make(
        service, shop, email="a@example.com", phone="+14155552671", email_consent=ConsentIntent.SUBSCRIBE
    )
    second = make(
        service, shop, email="a@example.com", phone="+14155552672", email_consent=ConsentIntent.SUBSCRIBE
    )
    response = consent(client, auth, ids=[first, second], channel="email", state="unsubscribed")
    assert response.json == {"updated": 2}


def test_other_shops_ids_are_ignored(
    app: Flask, client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    other = add_shop(app, "other.myshopify.com")
    theirs = make(service, other, email="a@example.com", email_consent=ConsentIntent.SUBSCRIBE)
    mine = make(service, shop, email="a@example.com", email_consent=ConsentIntent.SUBSCRIBE)
    assert consent(client, auth, ids=[theirs], channel="email", state="unsubscribed").json == {"updated": 0}
    assert row(db, theirs).email_consent == "subscribed"
    # Rule 8's reach stays inside the shop too.
    assert consent(client, auth, ids=[mine], channel="email", state="unsubscribed").json == {"updated": 1}
    assert row(db, theirs).email_consent == "subscribed"
    delete = client.post("/api/v1/contacts/delete", json={"ids": [theirs]}, headers=auth)
    assert delete.json == {"deleted": 0}
    assert client.delete(f"/api/v1/contacts/{theirs}", headers=auth).status_code == 404
    assert count(db, Contact, Contact.id == theirs) == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"ids": "1,2", "channel": "email", "state": "subscribed"}, {"ids"}),
        ({"ids": [1, "2"], "channel": "email", "state": "subscribed"}, {"ids"}),
        ({"ids": [True], "channel": "email", "state": "subscribed"}, {"ids"}),
        ({"ids": list(range(10_001)), "channel": "email", "state": "subscribed"}, {"ids"}),
        ({"ids": [1], "channel": "fax", "state": "pending"}, {"channel", "state"}),
        ({"ids": [1], "channel": "sms", "state": "not_subscribed"}, {"state"}),
        ({"channel": "sms", "state": "subscribed"}, {"ids"}),
    ],
)
def test_bulk_consent_validation(
    client: FlaskClient, shop: Shop, auth: dict[str, str], body: dict[str, Any], fields: set[str]
) -> None:
    response = consent(client, auth, **body)
    assert response.status_code == 422
    assert set(response.json["errors"]) == fields


def test_bulk_delete_validation(client: FlaskClient, shop: Shop, auth: dict[str, str]) -> None:
    for body in ({"ids": [1.5]}, {"ids": None}, {"ids": list(range(10_001))}):
        response = client.post("/api/v1/contacts/delete", json=body, headers=auth)
        assert response.status_code == 422
        assert set(response.json["errors"]) == {"ids"}
    assert client.post("/api/v1/contacts/delete", data="x", headers=auth).status_code == 400
    assert client.post("/api/v1/contacts/delete", json={"ids": []}, headers=auth).json == {"deleted": 0}
    assert client.post("/api/v1/contacts/delete", json={"ids": [1]}).status_code == 401


def test_delete_removes_the_contact_its_events_and_waiting_writes_and_audits_it(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str], api_key: str
) -> None:
    contact_id = make(service, shop, email="ann@example.com", first_name="Ann", phone="+14155552671")
    assert waiting_pushes(db, contact_id) == 1
    pushes_before = count(db, OutboxItem)

    response = client.delete(f"/api/v1/contacts/{contact_id}", headers=auth)

    assert response.status_code == 204
    assert client.get(f"/api/v1/contacts/{contact_id}", headers=auth).status_code == 404
    assert count(db, ContactEvent, ContactEvent.contact_id == contact_id) == 0
    assert count(db, OutboxItem, OutboxItem.contact_id == contact_id) == 0
    # The platform customer is left alone: nothing new is queued for it.
    assert count(db, OutboxItem) == pushes_before - 1
    with db.sessionmaker() as session:
        audit = session.scalars(sa.select(AuditLog).where(AuditLog.shop_id == shop.id)).all()
    assert len(audit) == 1
    entry = audit[0]
    assert (entry.action, entry.contact_id, entry.actor) == (
        "contact.deleted",
        contact_id,
        f"api key {api_key[:10]}",
    )
    assert entry.summary["had_email"] is True
    assert entry.summary["source"] == "form"
    text = str(entry.summary) + entry.actor
    for personal in ("ann@example.com", "Ann", "4155552671", api_key):
        assert personal not in text
    assert client.delete(f"/api/v1/contacts/{contact_id}", headers=auth).status_code == 404


def test_bulk_delete_counts_and_audits_each_contact_with_the_session_user(
    app: Flask, client: FlaskClient, service: ContactService, db: Database, shop: Shop
) -> None:
    ids = [make(service, shop, email=f"p{i}@example.com") for i in range(3)]
    keep = make(service, shop, email="keep@example.com")
    token = session_token(shop, sub="73")
    headers = {"Authorization": f"Bearer {token}"}

    response = client.post("/api/v1/contacts/delete", json={"ids": [*ids, ids[0], 424242]}, headers=headers)

    assert response.status_code == 200
    assert response.json == {"deleted": 3}
    assert count(db, Contact, Contact.shop_id == shop.id) == 1
    assert count(db, Contact, Contact.id == keep) == 1
    with db.sessionmaker() as session:
        audit = session.scalars(sa.select(AuditLog).order_by(AuditLog.contact_id)).all()
    assert [a.contact_id for a in audit] == sorted(ids)
    assert {a.actor for a in audit} == {"shopify user 73"}
    assert all(a.summary["bulk"] for a in audit)
    assert all(token not in str(a.summary) for a in audit)


def test_bulk_consent_by_a_session_token_records_the_user(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop
) -> None:
    contact_id = make(service, shop, email="ann@example.com")
    headers = {"Authorization": f"Bearer {session_token(shop, sub='99')}"}
    response = client.post(
        "/api/v1/contacts/consent",
        json={"ids": [contact_id], "channel": "email", "state": "unsubscribed"},
        headers=headers,
    )
    assert response.json == {"updated": 1}
    assert events(db, contact_id)[-1].data["actor"] == "shopify user 99"


def test_a_large_bulk_runs_in_chunks_and_still_counts_exactly(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    records = [Collected(email=f"bulk{i}@example.com") for i in range(620)]
    results = service.sync_batch(shop.id, records, source=Source.IMPORT)
    ids = [r.contact_id for r in results if r.contact_id is not None]
    assert len(ids) == 620
    response = consent(client, auth, ids=ids, channel="email", state="unsubscribed")
    assert response.json == {"updated": 620}
    assert client.post("/api/v1/contacts/delete", json={"ids": ids}, headers=auth).json == {"deleted": 620}
    assert count(db, AuditLog, AuditLog.shop_id == shop.id) == 620
