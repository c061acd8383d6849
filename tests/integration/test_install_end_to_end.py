"""The whole Shopify path against the development store over HTTP: install (authorization code) → token →
backfill of the customers the store already had (bulk export) → refresh of the expiring token → webhooks
mirrored → popsync's own write and its echo. Each piece is tested on its own elsewhere;
this shows they fit."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.contacts.service import ContactService
from app.db import Database
from app.db import get_database
from app.jobs import Worker
from app.models import Contact
from app.models import ContactEvent
from app.models import CustomerPull
from app.models import Shop
from app.models import WebhookDelivery
from app.platforms import client_for
from app.platforms.base import CustomerWrite
from app.platforms.budget import RateBudget
from app.platforms.devstore import DevStore
from app.shops import access_token
from tests.functional.test_shopify_install import callback_params
from tests.functional.test_shopify_install import shopify_app
from tests.functional.test_shopify_install import start_install
from tests.integration.test_shopify_tokens import Clock as StoreClock
from tests.integration.test_shopify_tokens import running_store
from tests.unit.test_session_tokens import API_KEY
from tests.unit.test_session_tokens import SECRET

DOMAIN = "e2e-shop.myshopify.com"


class WorkerClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store() -> DevStore:
    return DevStore(webhook_secrets={"shopify": SECRET}, clock=StoreClock())


@pytest.fixture
def origin(store: DevStore) -> Iterator[str]:
    with running_store(store) as origin:
        yield origin


@pytest.fixture
def app(engine: sa.Engine, connection: sa.Connection, origin: str) -> Flask:
    return shopify_app(
        engine, connection, SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, SHOPIFY_ADMIN_ORIGIN=origin
    )


def the_shop(db: Database) -> Shop:
    with db.sessionmaker() as session:
        shop = session.scalar(sa.select(Shop).where(Shop.domain == DOMAIN))
        assert shop is not None
        return shop


def contacts(db: Database) -> dict[str, Contact]:
    with db.sessionmaker() as session:
        return {c.email or c.phone or "": c for c in session.scalars(sa.select(Contact))}


def deliver_webhooks(client: FlaskClient, store: DevStore) -> list[int]:
    """Deliver what the store queued, exactly as it signed it (the store's sender has no app URL here)."""
    statuses = []
    for sent in store.webhooks.sent:
        body = json.dumps(sent["payload"], separators=(",", ":"), default=str).encode()
        statuses.append(client.post("/webhooks/shopify", data=body, headers=sent["headers"]).status_code)
    store.webhooks.sent.clear()
    return statuses


def run(worker: Worker, clock: WorkerClock) -> None:
    for _ in range(100):
        if worker.run_once():
            continue
        wait = worker.seconds_until_due()
        if wait is None:
            return
        clock.now += timedelta(seconds=wait + 0.01)
    raise AssertionError("the worker did not settle")


@pytest.mark.slow
def test_install_backfill_refresh_webhooks_and_echo(
    app: Flask, store: DevStore, service: ContactService
) -> None:
    db = get_database(app)
    keyring = app.extensions["popsync.keyring"]
    settings = app.config["POPSYNC"]
    client = app.test_client()

    # 1. The merchant installs popsync: grant page, callback, an expiring offline token from the store.
    state = start_install(client, DOMAIN)
    assert (
        client.get("/auth/shopify/callback", query_string=callback_params(state, shop=DOMAIN)).status_code
        == 302
    )
    shop = the_shop(db)
    first_token = access_token(shop, keyring)
    assert first_token is not None
    assert shop.access_token_expires_at is not None

    # 2. The store already had customers (made by the merchant before popsync): the webhooks of their
    #    creation never reach popsync (webhooks are not guaranteed); the backfill brings them in.
    existing = client_for(shop, settings=settings, keyring=keyring, budget=RateBudget(db))
    existing.create_customer(CustomerWrite({"email": "ann@example.com", "first_name": "Ann"}), ["vip"])
    existing.create_customer(CustomerWrite({"email": "bob@example.com", "phone": "+14155550100"}), [])
    existing.create_customer(CustomerWrite({"phone": "+14155552671", "last_name": "Lee"}), [])
    store.webhooks.sent.clear()

    # 3. The worker runs an hour later, when the token is about to expire: it refreshes it first.
    clock = WorkerClock(shop.access_token_expires_at - timedelta(minutes=1))
    worker = Worker(db, settings, keyring, service, clock=clock, rng=random.Random(1), schedule_daily=False)
    run(worker, clock)
    shop = the_shop(db)
    second_token = access_token(shop, keyring)
    assert second_token not in (None, first_token)
    assert store.shop_for_token("shopify", first_token, DOMAIN) is None
    assert store.shop_for_token("shopify", second_token or "", DOMAIN) is not None

    with db.sessionmaker() as session:
        [pull] = session.scalars(sa.select(CustomerPull)).all()
    assert (pull.kind, pull.status, pull.total, pull.processed, pull.created) == ("backfill", "done", 3, 3, 3)
    found = contacts(db)
    assert set(found) == {"ann@example.com", "bob@example.com", "+14155552671"}
    assert {(c.source, c.sync_status) for c in found.values()} == {("platform", "synced")}
    assert all(
        c.platform_customer_id and c.platform_customer_id.startswith("gid://shopify/Customer/")
        for c in found.values()
    )
    assert found["ann@example.com"].first_name == "Ann"
    assert found["bob@example.com"].phone == "+14155550100"
    assert store.webhooks.sent == []  # mirrored values are never written back

    # 4. Ann changes her name in the store: the webhook is recorded, answered, and mirrored by the worker.
    fresh = client_for(shop, settings=settings, keyring=keyring, budget=RateBudget(db))
    ann = fresh.find_customer(email="ann@example.com")
    assert ann is not None
    fresh.update_customer(ann, CustomerWrite({"first_name": "Anne"}))
    assert deliver_webhooks(client, store) == [200]
    run(worker, clock)
    assert contacts(db)["ann@example.com"].first_name == "Anne"

    # 5. Bob fills the popup with his last name: popsync writes it to his customer, and the webhook that
    #    write causes (the echo) changes nothing, even delivered twice.
    assert client.post(
        "/storefront/submissions", json={"shop": DOMAIN, "email": "bob@example.com", "last_name": "Stone"}
    ).get_json() == {"ok": True}
    run(worker, clock)
    bob = contacts(db)["bob@example.com"]
    assert (bob.last_name, bob.sync_status) == ("Stone", "synced")
    customer = fresh.find_customer(email="bob@example.com")
    assert customer is not None
    assert customer.last_name == "Stone"
    echo = list(store.webhooks.sent)
    assert [sent["topic"] for sent in echo] == ["customers/update"]
    store.webhooks.sent.extend(echo)  # the platform delivers it twice
    with db.sessionmaker() as session:
        events_before = session.scalar(sa.select(sa.func.count(ContactEvent.id)))
    assert deliver_webhooks(client, store) == [200, 200]
    run(worker, clock)
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count(WebhookDelivery.id))) == 2  # Ann's, and the echo once
        assert session.scalar(sa.select(sa.func.count(ContactEvent.id))) == events_before
    assert contacts(db)["bob@example.com"].updated_at == bob.updated_at
