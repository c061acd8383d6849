"""Rule 9 end to end: the worker writes contacts to the development store over real HTTP, through faults,
crashes and competing workers, and every contact reaches the platform exactly once.

These tests commit for real on a fresh database (not inside a rolled-back transaction).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.db import get_database
from app.enums import Source
from app.jobs import Claim
from app.jobs import Worker
from app.models import Contact
from app.models import OutboxItem
from app.platforms.devstore import DevStore
from app.platforms.devstore import shopify_api
from app.platforms.devstore import shopline_api
from app.shops import register_shop
from tests.conftest import app_config
from tests.devstore_server import RunningDevStore
from tests.devstore_server import running_devstore

TOKENS = {"shopify": "shpat_e2e_token", "shopline": "shopline_e2e_token"}
DOMAINS = {"shopify": "e2e.myshopify.com", "shopline": "e2e.myshopline.com"}

pytestmark = pytest.mark.slow


@pytest.fixture
def devstore() -> Iterator[RunningDevStore]:
    store = DevStore(
        seed=11,
        shopify_restore_rate=100_000,
        shopify_bucket_size=1_000_000,
        shopline_rate=100_000,
        shopline_bucket_size=1_000_000,
    )
    for platform, domain in DOMAINS.items():
        store.add_shop(platform, domain, TOKENS[platform])
    with running_devstore(store) as running:
        yield running


def make_app(engine: sa.Engine, devstore: RunningDevStore, **extra: str) -> Flask:
    config = app_config(
        engine.url.render_as_string(hide_password=False),
        DATABASE_ENGINE=engine,
        SHOPIFY_ADMIN_ORIGIN=devstore.origin,
        SHOPLINE_ADMIN_ORIGIN=devstore.origin,
        PLATFORM_TIMEOUT="0.5",
        SHOPLINE_REQUESTS_PER_SECOND="500",
        **extra,
    )
    return create_app(config)


def add_shops(app: Flask) -> dict[str, int]:
    ids = {}
    with get_database(app).write_transaction() as session:
        for platform, domain in DOMAINS.items():
            shop = register_shop(
                session,
                app.extensions["popsync.keyring"],
                platform=platform,
                domain=domain,
                token=TOKENS[platform],
                region="US",
            )
            ids[platform] = shop.id
    return ids


def worker_for(app: Flask, seed: int = 1) -> Worker:
    return Worker(
        get_database(app),
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        rng=random.Random(seed),
        base_backoff=0.02,
    )


def seed_contacts(app: Flask, shop_id: int, count: int, prefix: str = "p") -> None:
    records = [
        Collected(
            email=f"{prefix}{i}@example.com",
            phone=f"+1415555{i:04d}" if i % 2 else None,
            first_name=f"Name{i}",
            email_consent=ConsentIntent.SUBSCRIBE if i % 3 == 0 else None,
            tags=("popup",),
        )
        for i in range(count)
    ]
    service = app.extensions["popsync.contacts"]
    for start in range(0, count, 500):
        service.sync_batch(shop_id, records[start : start + 500], source=Source.FORM)


def platform_customers(store: DevStore, platform: str) -> list[dict[str, Any]]:
    module = shopify_api if platform == "shopify" else shopline_api
    [(shop_id, _)] = [(i, d) for i, d in store.shop_domains(platform) if d == DOMAINS[platform]]
    return module.list_customers(store, shop_id)


def assert_each_contact_once(app: Flask, store: DevStore, platform: str, shop_id: int, count: int) -> None:
    customers = platform_customers(store, platform)
    emails = Counter(c["email"] for c in customers)
    assert len(customers) == count, f"{len(customers)} customers for {count} contacts"
    assert all(n == 1 for n in emails.values())
    with get_database(app).sessionmaker() as session:
        contacts = session.scalars(sa.select(Contact).where(Contact.shop_id == shop_id)).all()
        assert {c.sync_status for c in contacts} == {"synced"}
        by_id = {c["id"]: c for c in customers}
        for contact in contacts:
            assert by_id[contact.platform_customer_id]["email"] == contact.email
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.status.in_(("pending", "running", "dead")))
            )
            == 0
        )


@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_rule_9_conflicts_against_the_development_store(
    fresh_database: sa.Engine, devstore: RunningDevStore, platform: str
) -> None:
    app = make_app(fresh_database, devstore)
    shops = add_shops(app)
    service = app.extensions["popsync.contacts"]
    worker = worker_for(app)
    # Customer X holds email A (with another phone); customer Y holds phone B (with another email).
    service.sync(shops[platform], Collected(email="a@example.com", phone="+14155550001"), source=Source.FORM)
    service.sync(shops[platform], Collected(email="y@example.com", phone="+14155550002"), source=Source.FORM)
    worker.drain(30)
    holders = {c["email"]: c["id"] for c in platform_customers(devstore.store, platform)}
    with get_database(app).write_transaction() as session:
        session.execute(sa.delete(Contact))  # popsync forgets them; the platform keeps them

    one = service.sync(
        shops[platform],
        Collected(email="a@example.com", phone="+14155550003", first_name="New"),
        source=Source.FORM,
    )
    both = service.sync(
        shops[platform], Collected(email="a@example.com", phone="+14155550002"), source=Source.FORM
    )
    worker.drain(30)
    with get_database(app).sessionmaker() as session:
        written = session.get(Contact, one.contact_id)
        nothing = session.get(Contact, both.contact_id)
    assert written.sync_status == "conflict"
    assert holders["a@example.com"] in written.sync_detail
    customers = {c["id"]: c for c in platform_customers(devstore.store, platform)}
    new_customer = customers[written.platform_customer_id]
    assert (new_customer["email"], new_customer["phone"]) == (None, "+14155550003")
    assert nothing.sync_status == "conflict"
    assert holders["a@example.com"] in nothing.sync_detail
    assert holders["y@example.com"] in nothing.sync_detail
    assert nothing.platform_customer_id is None
    assert len(customers) == 3


# The long drain runs once, on PostgreSQL (production); the worker's SQLite path is covered by the others.
@pytest.mark.postgresql
@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_a_backlog_through_30_percent_faults_lands_exactly_once(
    fresh_database: sa.Engine, devstore: RunningDevStore, platform: str
) -> None:
    app = make_app(fresh_database, devstore)
    shops = add_shops(app)
    count = 1000 if platform == "shopify" else 250
    seed_contacts(app, shops[platform], count)
    devstore.store.faults.configure(
        error=0.10, throttle=0.09, lost_answer=0.10, timeout=0.01, timeout_seconds=0.7
    )
    drain_in_parallel([worker_for(app, seed=1), worker_for(app, seed=2)], timeout=600)
    devstore.store.faults.configure(error=0, throttle=0, lost_answer=0, timeout=0)
    assert sum(devstore.store.faults.counts.values()) > count * 0.3
    assert_each_contact_once(app, devstore.store, platform, shops[platform], count)


def drain_in_parallel(workers: list[Worker], timeout: float) -> None:
    errors: list[BaseException] = []

    def run(worker: Worker) -> None:
        try:
            worker.drain(timeout=timeout)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


@pytest.mark.postgresql
def test_two_workers_never_push_the_same_row(fresh_database: sa.Engine, devstore: RunningDevStore) -> None:
    app = make_app(fresh_database, devstore)
    shops = add_shops(app)
    seed_contacts(app, shops["shopify"], 400)
    # Each worker's claims as (row id, start, end). A row may pass from one worker to the other between
    # attempts (a throttled write goes back to pending and whoever claims next runs it), never while one
    # of them holds it.
    claimed: list[list[tuple[int, float, float]]] = [[], []]

    class Recording(Worker):
        def __init__(self, index: int) -> None:
            base = worker_for(app, seed=index)
            super().__init__(
                base.db, base.settings, base.keyring, base.contacts, rng=base.rng, base_backoff=0.02
            )
            self.index = index

        def process(self, claim: Claim) -> None:
            started = time.monotonic()
            try:
                super().process(claim)
            finally:
                claimed[self.index].append((claim.id, started, time.monotonic()))

    drain_in_parallel([Recording(0), Recording(1)], timeout=300)
    assert claimed[0]
    assert claimed[1]
    held_at_once = [
        (row, first, second)
        for row, *first in claimed[0]
        for other, *second in claimed[1]
        if row == other and first[0] < second[1] and second[0] < first[1]
    ]
    assert held_at_once == []
    assert_each_contact_once(app, devstore.store, "shopify", shops["shopify"], 400)


def test_a_worker_killed_mid_drain_loses_nothing_and_duplicates_nothing(
    fresh_database: sa.Engine, devstore: RunningDevStore, tmp_path: Path
) -> None:
    url = fresh_database.url.render_as_string(hide_password=False)
    app = make_app(fresh_database, devstore, WORKER_LEASE="2")
    shops = add_shops(app)
    count = 200
    seed_contacts(app, shops["shopify"], count)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SECRET_KEY": app.config["SECRET_KEY"],
        "DATABASE_URL": url,
        "SHOPIFY_ADMIN_ORIGIN": devstore.origin,
        "SHOPLINE_ADMIN_ORIGIN": devstore.origin,
        "WORKER_LEASE": "2",
        "WORKER_POLL_INTERVAL": "0.05",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(platform_customers(devstore.store, "shopify")) < count // 3:
            assert time.monotonic() < deadline, "the worker made no progress"
            assert worker.poll() is None
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    assert 0 < len(platform_customers(devstore.store, "shopify")) < count
    time.sleep(2.1)  # the dead worker's lease runs out
    finishing = Worker(
        get_database(app),
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        base_backoff=0.02,
    )
    finishing.drain(timeout=300)
    assert_each_contact_once(app, devstore.store, "shopify", shops["shopify"], count)


def test_the_webhook_caused_by_a_push_is_signed_and_recorded(
    fresh_database: sa.Engine, devstore: RunningDevStore
) -> None:
    app = make_app(fresh_database, devstore)
    shops = add_shops(app)
    app.extensions["popsync.contacts"].sync(
        shops["shopify"], Collected(email="w@example.com", first_name="W"), source=Source.FORM
    )
    worker_for(app).drain(30)
    sent = [w for w in devstore.store.webhooks.sent if w["platform"] == "shopify"]
    assert sent
    assert sent[0]["topic"] == "customers/create"
    assert sent[0]["payload"]["email"] == "w@example.com"
    assert sent[0]["headers"]["X-Shopify-Hmac-Sha256"]
    with get_database(app).sessionmaker() as session:
        contact = session.scalars(sa.select(Contact)).one()
    assert contact.platform_updated_at is not None


def test_shopline_tokens_are_refreshed_before_expiry_and_after_a_refusal(
    fresh_database: sa.Engine, devstore: RunningDevStore
) -> None:
    from datetime import UTC
    from datetime import datetime
    from datetime import timedelta

    from app.models import Shop
    from app.shops import access_token

    secret = "shopline-app-secret-for-tests"
    devstore.store.webhooks.secrets["shopline"] = secret
    app = make_app(fresh_database, devstore, SHOPLINE_APP_KEY="popsync-test", SHOPLINE_APP_SECRET=secret)
    shops = add_shops(app)
    keyring = app.extensions["popsync.keyring"]
    with get_database(app).write_transaction() as session:
        session.get(Shop, shops["shopline"]).access_token_expires_at = datetime.now(UTC) + timedelta(
            minutes=20
        )
    service = app.extensions["popsync.contacts"]
    service.sync(shops["shopline"], Collected(email="r1@example.com"), source=Source.FORM)
    worker_for(app).drain(30)
    with get_database(app).sessionmaker() as session:
        shop = session.get(Shop, shops["shopline"])
        first_refresh = access_token(shop, keyring)
        assert first_refresh != TOKENS["shopline"]
        assert shop.access_token_expires_at > datetime.now(UTC) + timedelta(hours=9)
    assert [c["email"] for c in platform_customers(devstore.store, "shopline")] == ["r1@example.com"]

    # The platform stops accepting the stored token (as after a refresh elsewhere): refresh, then go on.
    devstore.store.add_shop("shopline", DOMAINS["shopline"], "a-token-popsync-does-not-have")
    service.sync(shops["shopline"], Collected(email="r2@example.com"), source=Source.FORM)
    worker_for(app).drain(30)
    with get_database(app).sessionmaker() as session:
        shop = session.get(Shop, shops["shopline"])
        assert access_token(shop, keyring) not in (first_refresh, "a-token-popsync-does-not-have")
        assert shop.needs_reauth is False
    assert sorted(c["email"] for c in platform_customers(devstore.store, "shopline")) == [
        "r1@example.com",
        "r2@example.com",
    ]
