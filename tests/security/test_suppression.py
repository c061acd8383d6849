"""Erased people stay erased (rule 11): after ``customers/redact`` their email and phone come back through
no way in (an import, a platform webhook, an email open, a link click, a backfill of the platform's
customers, a merchant's edit), until the person submits a storefront form again, which lifts the
suppression of what that submission collected, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import Database
from app.db import utcnow
from app.models import Contact
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from tests.security.conftest import SHOPIFY_SECRET
from tests.security.conftest import Tenant

ERASED_EMAIL = "erased.person@example.com"
ERASED_PHONE = "+14155550142"
ERASED_CUSTOMER = 9001
counter = iter(range(1, 1_000_000))


def webhook(client: FlaskClient, tenant: Tenant, topic: str, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    digest = hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
    answer = client.post(
        "/webhooks/shopify",
        data=body,
        content_type="application/json",
        headers={
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": tenant.shop.domain,
            "X-Shopify-Webhook-Id": f"suppression-{next(counter)}",
        },
    )
    assert answer.status_code == 200, answer.get_json()
    return answer


def holders(db: Database, tenant: Tenant) -> list[tuple[str | None, str | None]]:
    """The contacts of the shop holding the erased email or phone."""
    with db.sessionmaker() as session:
        rows = session.execute(
            sa.select(Contact.email, Contact.phone).where(
                Contact.shop_id == tenant.shop.id,
                sa.or_(Contact.email == ERASED_EMAIL, Contact.phone == ERASED_PHONE),
            )
        )
        return [tuple(row) for row in rows]


def submit(client: FlaskClient, tenant: Tenant, **fields: Any) -> None:
    answer = client.post(
        "/storefront/submissions",
        json={"shop": tenant.shop.domain, **fields},
        headers={"Origin": f"https://{tenant.shop.domain}"},
    )
    assert answer.status_code == 200, answer.get_json()


@pytest.fixture
def erased(client: FlaskClient, db: Database, mallory: Tenant, worker: Any) -> Tenant:
    """The shop, after the person (email and phone) was erased by a customers/redact."""
    submit(client, mallory, email=ERASED_EMAIL, phone=ERASED_PHONE, first_name="Erin")
    assert holders(db, mallory)
    webhook(
        client,
        mallory,
        "customers/redact",
        {
            "shop_domain": mallory.shop.domain,
            "customer": {"id": ERASED_CUSTOMER, "email": ERASED_EMAIL, "phone": ERASED_PHONE},
        },
    )
    worker.run(until_idle=True)
    assert holders(db, mallory) == []
    return mallory


def import_rows(client: FlaskClient, tenant: Tenant, worker: Any, content: str) -> dict[str, Any]:
    started = client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(content.encode()), "list.csv"), "write_platform": "true"},
        headers=tenant.key_auth,
    )
    assert started.status_code == 202, started.get_json()
    worker.run(until_idle=True)
    return client.get(f"/api/v1/imports/{started.json['id']}", headers=tenant.key_auth).json


def test_no_way_in_brings_an_erased_person_back(
    app: Flask,
    client: FlaskClient,
    db: Database,
    erased: Tenant,
    worker: Any,
    platform: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app import pulls

    monkeypatch.setattr(pulls, "BULK_POLL_SECONDS", 0.0)  # the bulk export is looked at again at once
    keyring = app.extensions["popsync.keyring"]
    # An import, by email, by phone, and both.
    report = import_rows(
        client,
        erased,
        worker,
        f"email,phone,first_name\n{ERASED_EMAIL},,A\n,{ERASED_PHONE},B\n{ERASED_EMAIL},{ERASED_PHONE},C\n",
    )
    assert (report["status"], report["created"], report["updated"]) == ("done", 0, 0), report
    assert holders(db, erased) == []
    # The platform announces the person as a new customer (another id), by email and by phone.
    for number, values in enumerate(({"email": ERASED_EMAIL}, {"phone": ERASED_PHONE})):
        webhook(
            client,
            erased,
            "customers/create",
            {"id": 7000 + number, "updated_at": "2030-01-01T00:00:00Z", **values},
        )
    worker.run(until_idle=True)
    assert holders(db, erased) == []
    # An email open and a link click from an old message.
    for channel, identifier in (("email", {"email": ERASED_EMAIL}), ("sms", {"phone": ERASED_PHONE})):
        link = TrackingLink(
            erased.shop.id, channel, "old-message", utcnow(), url="https://shop.example/", **identifier
        )
        token = seal(keyring, link)
        assert client.get(f"/t/o/{token}.gif").status_code == 200
        assert client.get(f"/t/c/{token}").status_code == 302
    worker.run(until_idle=True)
    assert holders(db, erased) == []
    # A backfill of the platform's customers that still lists the person.
    platform.add(email=ERASED_EMAIL, phone=ERASED_PHONE, first_name="Erin")
    pulled = client.post("/api/v1/customer-pulls", json={"kind": "backfill"}, headers=erased.key_auth)
    assert pulled.status_code == 202, pulled.get_json()
    for _ in range(5):
        worker.run(until_idle=True)
    pull = client.get(f"/api/v1/customer-pulls/{pulled.json['id']}", headers=erased.key_auth).json
    assert pull["status"] == "done", pull
    assert holders(db, erased) == []
    # The merchant types the email or phone into another contact.
    submit(client, erased, email="someone.else@example.com")
    [other] = client.get("/api/v1/contacts?q=someone.else", headers=erased.key_auth).json["contacts"]
    for change in ({"email": ERASED_EMAIL}, {"phone": ERASED_PHONE}):
        edited = client.patch(f"/api/v1/contacts/{other['id']}", json=change, headers=erased.key_auth)
        assert edited.status_code == 422, edited.get_json()
        assert list(edited.json["errors"]) == list(change)
    assert holders(db, erased) == []


def test_only_the_persons_own_submission_lifts_it_for_what_it_collected(
    client: FlaskClient, db: Database, erased: Tenant, worker: Any
) -> None:
    submit(client, erased, email=ERASED_EMAIL, email_consent=True)
    assert holders(db, erased) == [(ERASED_EMAIL, None)]
    # The phone was not in that submission: it is still suppressed.
    report = import_rows(client, erased, worker, f"email,phone\nnew.one@example.com,{ERASED_PHONE}\n")
    assert report["created"] == 0, report
    assert holders(db, erased) == [(ERASED_EMAIL, None)]
    # The email is the person's own again: an import may now update it.
    report = import_rows(client, erased, worker, f"email,first_name\n{ERASED_EMAIL},Erin\n")
    assert report["updated"] == 1, report


def test_a_submission_in_another_shop_lifts_nothing_here(
    app: Flask, client: FlaskClient, db: Database, erased: Tenant, victim: Tenant, worker: Any
) -> None:
    submit(client, victim, email=ERASED_EMAIL)
    report = import_rows(client, erased, worker, f"email\n{ERASED_EMAIL}\n")
    assert report["created"] == 0, report
    assert holders(db, erased) == []


def test_a_linked_customers_update_does_not_bring_an_erased_email_back(
    client: FlaskClient, db: Database, erased: Tenant, worker: Any
) -> None:
    webhook(
        client,
        erased,
        "customers/create",
        {"id": 8100, "email": "linked@example.com", "updated_at": "2030-01-01T00:00:00Z"},
    )
    worker.run(until_idle=True)
    webhook(
        client,
        erased,
        "customers/update",
        {"id": 8100, "email": ERASED_EMAIL, "updated_at": "2030-01-02T00:00:00Z"},
    )
    worker.run(until_idle=True)
    assert holders(db, erased) == []
