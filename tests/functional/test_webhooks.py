"""Webhooks from both platforms: verified, recorded once, handled by the worker by the contract's rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.jobs import Worker
from app.models import Contact
from app.models import ContactEvent
from app.models import DataRequest
from app.models import OutboxItem
from app.models import Shop
from app.models import WebhookDelivery
from tests.conftest import add_shop
from tests.fakes import MemoryPlatform

SECRET = "shopify-app-secret-for-tests"
OLD_SECRET = "shopify-old-secret-for-tests"
SHOPLINE_SECRET = "shopline-app-secret-for-tests"
A, B = "ann@example.com", "+14155552671"
GID = "gid://shopify/Customer/42"


@pytest.fixture
def app_extra() -> dict[str, Any]:
    return {
        "SHOPIFY_API_KEY": "key",
        "SHOPIFY_API_SECRET": SECRET,
        "SHOPIFY_API_SECRET_PREVIOUS": OLD_SECRET,
        "SHOPLINE_APP_KEY": "key",
        "SHOPLINE_APP_SECRET": SHOPLINE_SECRET,
    }


@pytest.fixture
def worker(app: Flask, db: Database, service: ContactService) -> Worker:
    # Platform writes go to an in-memory platform: these tests are about what comes back from it.
    platform = MemoryPlatform()
    return Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        client_factory=lambda shop: platform,
    )


counter = iter(range(1, 10_000))


def shopify(
    client: FlaskClient,
    topic: str,
    payload: dict[str, Any],
    *,
    secret: str = SECRET,
    webhook_id: str | None = None,
    shop: str = "demo.myshopify.com",
) -> Any:
    body = json.dumps(payload).encode()
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return client.post(
        "/webhooks/shopify",
        data=body,
        headers={
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Webhook-Id": webhook_id or f"wh-{next(counter)}",
            "Content-Type": "application/json",
        },
    )


def customer_payload(updated_at: datetime, **values: Any) -> dict[str, Any]:
    return {"id": 42, "admin_graphql_api_id": GID, "updated_at": updated_at.isoformat(), **values}


def contacts(db: Database) -> list[Contact]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Contact).order_by(Contact.id)))


def linked_contact(service: ContactService, db: Database, shop: Shop, updated_at: datetime) -> int:
    result = service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    with db.write_transaction() as session:
        contact = session.get(Contact, result.contact_id)
        contact.platform_customer_id = GID
        contact.platform_updated_at = updated_at
        contact.pending_fields = []
        contact.sync_status = "synced"
        # As if the worker had written it: nothing left to push.
        session.execute(sa.delete(OutboxItem).where(OutboxItem.contact_id == contact.id))
    return result.contact_id  # type: ignore[return-value]


def test_signatures_are_checked_with_the_current_and_the_previous_secret(
    client: FlaskClient, shop: Shop
) -> None:
    now = datetime.now(UTC)
    assert shopify(client, "customers/update", customer_payload(now)).status_code == 200
    assert shopify(client, "customers/update", customer_payload(now), secret=OLD_SECRET).status_code == 200
    assert shopify(client, "customers/update", customer_payload(now), secret="forged").status_code == 401
    unsigned = client.post("/webhooks/shopify", json={}, headers={"X-Shopify-Topic": "customers/update"})
    assert unsigned.status_code == 401


def test_a_delivery_is_recorded_once(client: FlaskClient, db: Database, shop: Shop) -> None:
    payload = customer_payload(datetime.now(UTC), email=A)
    assert shopify(client, "customers/update", payload, webhook_id="same").json["outcome"] == "recorded"
    assert shopify(client, "customers/update", payload, webhook_id="same").json["outcome"] == "duplicate"
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxItem)) == 1


def test_unknown_topics_are_answered_and_ignored(client: FlaskClient, db: Database, shop: Shop) -> None:
    response = shopify(client, "orders/create", {"id": 1})
    assert response.status_code == 200
    assert response.json["outcome"].startswith("ignored")


def test_uninstall_deletes_the_tokens_in_the_request(client: FlaskClient, db: Database, shop: Shop) -> None:
    assert shopify(client, "app/uninstalled", {"id": 1, "domain": "demo.myshopify.com"}).status_code == 200
    with db.sessionmaker() as session:
        saved = session.get(Shop, shop.id)
        assert saved.access_token is None
        assert saved.uninstalled_at is not None
    submission = client.post("/storefront/submissions", json={"shop": "demo.myshopify.com", "email": A})
    assert submission.status_code == 404


def test_a_newer_change_is_mirrored_and_never_written_back(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    contact_id = linked_contact(service, db, shop, t0)
    payload = customer_payload(
        t0 + timedelta(minutes=1),
        email=A,
        first_name="Annie",
        last_name="",
        phone="(415) 555-2671",
        default_address={"country_code": "US"},
    )
    shopify(client, "customers/update", payload)
    worker.run(until_idle=True)
    [contact] = contacts(db)
    assert (contact.first_name, contact.last_name, contact.phone, contact.country) == ("Annie", None, B, "US")
    assert contact.platform_updated_at == t0 + timedelta(minutes=1)
    assert contact.pending_fields == []
    with db.sessionmaker() as session:
        kinds = [
            e.kind
            for e in session.scalars(sa.select(ContactEvent).where(ContactEvent.contact_id == contact_id))
        ]
        assert "mirrored" in kinds
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.kind == "push_contact", OutboxItem.status == "pending")
            )
            == 0
        )


def test_the_echo_of_our_own_write_and_late_deliveries_change_nothing(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    t1 = datetime(2026, 11, 1, tzinfo=UTC)
    linked_contact(service, db, shop, t1)
    # A newer local change is waiting to be written when the echo of the previous write arrives.
    service.sync(shop.id, Collected(email=A, first_name="Anne"), source=Source.FORM)
    shopify(client, "customers/update", customer_payload(t1, email=A, first_name="Ann"))
    shopify(
        client, "customers/update", customer_payload(t1 - timedelta(minutes=5), email=A, first_name="Old")
    )
    for _ in range(2):
        [claim] = [c for c in worker.claim(10) if c.kind == "webhook"] or [None]
        if claim:
            worker.process(claim)
    [contact] = contacts(db)
    assert contact.first_name == "Anne"
    assert "first_name" in contact.pending_fields


def test_an_unlinked_customer_is_linked_or_added_as_a_platform_contact(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    service.sync(shop.id, Collected(email=A), source=Source.IMPORT)
    now = datetime.now(UTC)
    shopify(client, "customers/create", customer_payload(now, email=A.upper(), first_name="Ann"))
    shopify(client, "customers/create", {"id": 7, "email": "new@example.com", "updated_at": now.isoformat()})
    worker.run(until_idle=True)
    linked, added = contacts(db)
    assert (linked.platform_customer_id, linked.first_name) == (GID, "Ann")
    assert (added.email, added.source, added.sync_status, added.platform_customer_id) == (
        "new@example.com",
        "platform",
        "synced",
        "gid://shopify/Customer/7",
    )


def test_consent_topics_unsubscribe_every_holder(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    service.sync(
        shop.id,
        Collected(
            email=A, phone=B, email_consent=ConsentIntent.SUBSCRIBE, sms_consent=ConsentIntent.SUBSCRIBE
        ),
        source=Source.FORM,
    )
    service.sync(
        shop.id,
        Collected(email=A, phone="+14155550000", email_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
    )
    shopify(
        client,
        "customers_email_marketing_consent/update",
        {"customer_id": 42, "email_address": A, "email_marketing_consent": {"state": "unsubscribed"}},
    )
    shopify(
        client,
        "customers_marketing_consent/update",
        {"id": 42, "phone": B, "sms_marketing_consent": {"state": "unsubscribed"}},
    )
    worker.run(until_idle=True)
    assert [(c.email_consent, c.sms_consent) for c in contacts(db)] == [
        ("unsubscribed", "unsubscribed"),
        ("unsubscribed", "not_subscribed"),
    ]


def test_a_deleted_customer_unlinks_its_contact(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    linked_contact(service, db, shop, datetime.now(UTC))
    shopify(client, "customers/delete", {"id": 42, "admin_graphql_api_id": GID})
    worker.run(until_idle=True)
    [contact] = contacts(db)
    assert contact.platform_customer_id is None
    assert contact.email == A


def test_redact_erases_the_person_and_keeps_them_suppressed(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    linked_contact(service, db, shop, datetime.now(UTC))
    service.sync(shop.id, Collected(phone=B), source=Source.FORM)
    service.sync(shop.id, Collected(email="other@example.com"), source=Source.FORM)
    shopify(
        client,
        "customers/redact",
        {
            "shop_domain": "demo.myshopify.com",
            "customer": {"id": 42, "email": "nobody@example.com", "phone": B},
        },
    )
    worker.run(until_idle=True)
    assert [c.email for c in contacts(db)] == ["other@example.com"]
    with db.sessionmaker() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(ContactEvent)
                .where(ContactEvent.contact_id.not_in([c.id for c in contacts(db)]))
            )
            == 0
        )
    assert service.sync(shop.id, Collected(email=A), source=Source.IMPORT).contact_id is None
    assert service.sync(shop.id, Collected(phone=B), source=Source.OPEN).contact_id is None
    assert service.sync(shop.id, Collected(email=A), source=Source.FORM).contact_id is not None


def test_a_data_request_gathers_the_persons_data(
    client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    linked_contact(service, db, shop, datetime.now(UTC))
    shopify(client, "customers/data_request", {"customer": {"id": 42, "email": A}, "data_request": {"id": 9}})
    worker.run(until_idle=True)
    with db.sessionmaker() as session:
        [request] = session.scalars(sa.select(DataRequest)).all()
    [exported] = request.export["contacts"]
    assert exported["email"] == A
    assert [e["kind"] for e in exported["events"]] == ["submitted"]


def test_shop_redact_erases_the_shop(
    app: Flask, client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    other = add_shop(app, "other.myshopify.com")
    service.sync(shop.id, Collected(email=A), source=Source.FORM)
    service.sync(other.id, Collected(email=A), source=Source.FORM)
    shopify(client, "shop/redact", {"shop_domain": "demo.myshopify.com"})
    worker.run(until_idle=True)
    with db.sessionmaker() as session:
        assert session.get(Shop, shop.id) is None
        assert [c.shop_id for c in session.scalars(sa.select(Contact))] == [other.id]


def shopline(client: FlaskClient, topic: str, payload: dict[str, Any], *, encoding: str = "hex") -> Any:
    body = json.dumps(payload).encode()
    digest = hmac.new(SHOPLINE_SECRET.encode(), body, hashlib.sha256).digest()
    signature = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return client.post(
        "/webhooks/shopline",
        data=body,
        headers={
            "X-Shopline-Topic": topic,
            "X-Shopline-Hmac-Sha256": signature,
            "X-Shopline-Shop-Domain": "demo.myshopline.com",
            "X-Shopline-Webhook-Id": f"sl-{next(counter)}",
        },
    )


def test_shopline_webhooks_accept_hex_and_base64_and_uninstall(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    shop = add_shop(app, "demo.myshopline.com", platform="shopline")
    now = datetime.now(UTC).isoformat()
    assert shopline(client, "customers/update", {"id": "1", "email": A, "updated_at": now}).status_code == 200
    assert (
        shopline(client, "customers/update", {"id": "1", "updated_at": now}, encoding="b64").status_code
        == 200
    )
    forged = client.post(
        "/webhooks/shopline",
        data=b"{}",
        headers={"X-Shopline-Hmac-Sha256": "00", "X-Shopline-Topic": "customers/update"},
    )
    assert forged.status_code == 401
    shopline(client, "apps/installed_uninstalled", {"handle": "demo", "operate": "UNINSTALL"})
    with db.sessionmaker() as session:
        assert session.get(Shop, shop.id).uninstalled_at is not None


def test_the_merchant_downloads_a_data_request(
    app: Flask, client: FlaskClient, db: Database, shop: Shop, service: ContactService, worker: Worker
) -> None:
    from tests.conftest import add_api_key

    linked_contact(service, db, shop, datetime.now(UTC))
    shopify(client, "customers/data_request", {"customer": {"id": 42, "email": A}, "data_request": {"id": 9}})
    worker.run(until_idle=True)
    auth = {"Authorization": f"Bearer {add_api_key(app, shop)}"}
    [listed] = client.get("/api/v1/data-requests", headers=auth).json["data_requests"]
    assert listed["subject"]["customer_id"] == GID
    download = client.get(f"/api/v1/data-requests/{listed['id']}", headers=auth)
    assert "attachment" in download.headers["Content-Disposition"]
    assert download.json["contacts"][0]["email"] == A
    other = add_shop(app, "other.myshopify.com")
    other_auth = {"Authorization": f"Bearer {add_api_key(app, other)}"}
    assert client.get(f"/api/v1/data-requests/{listed['id']}", headers=other_auth).status_code == 404
    assert client.get("/api/v1/data-requests", headers=other_auth).json["data_requests"] == []
