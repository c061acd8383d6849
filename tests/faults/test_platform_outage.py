"""A platform outage longer than a few retries, then recovery: every accepted change reaches the platform
exactly once.

During the outage nearly every call fails, in the ways platforms fail: 5xx, timeouts, throttling, and
every write that gets through loses its answer (the write happens, the answer never arrives). The worker
runs on a clock the test moves, so many rounds of back-off pass in a moment:

- the platform comes back before ``SYNC_GIVE_UP_AFTER``: the backlog drains by itself;
- it stays away longer: the contacts show ``failed``, and the merchant's "retry all"
  (``POST /api/v1/contacts/retry-sync``) sends them once it is back.

Either way the writes whose answers were lost are found, not created twice (the worker looks before it
creates). Random faults at 30 % over a large backlog, two workers: tests/integration/test_platform_writes.py.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from app.db import get_database
from app.jobs import Worker
from app.models import Contact
from app.models import OutboxItem
from app.models import Shop
from app.platforms.devstore import DevStore
from app.shops import create_api_key
from tests.devstore_server import RunningDevStore
from tests.devstore_server import running_devstore
from tests.fakes import Clock
from tests.integration.test_platform_writes import DOMAINS
from tests.integration.test_platform_writes import TOKENS
from tests.integration.test_platform_writes import add_shops
from tests.integration.test_platform_writes import assert_each_contact_once
from tests.integration.test_platform_writes import make_app
from tests.integration.test_platform_writes import platform_customers
from tests.integration.test_platform_writes import seed_contacts

pytestmark = pytest.mark.slow

COUNT = 4
ROUND_SECONDS = 400.0  # more than the longest back-off (300 s): every waiting write is due each round


@pytest.fixture
def devstore() -> Iterator[RunningDevStore]:
    store = DevStore(
        seed=3,
        shopify_restore_rate=100_000,
        shopify_bucket_size=1_000_000,
        shopline_rate=100_000,
        shopline_bucket_size=1_000_000,
    )
    for platform, domain in DOMAINS.items():
        store.add_shop(platform, domain, TOKENS[platform])
    with running_devstore(store) as running:
        yield running


def outage(store: DevStore) -> None:
    """Nearly every call fails: 5xx, a throttled answer, a timeout (longer than PLATFORM_TIMEOUT); a write
    that gets through is done but its answer is lost (reads that get through are answered)."""
    store.faults.configure(error=0.5, throttle=0.2, timeout=0.08, timeout_seconds=0.6, lost_answer=1.0)


def recovery(store: DevStore) -> None:
    store.faults.configure(error=0, throttle=0, timeout=0, lost_answer=0)


def run_round(worker: Worker, clock: Clock) -> None:
    """Move the clock past every back-off and run each due write once."""
    clock.advance(ROUND_SECONDS)
    for _ in range(10 * COUNT):
        if not worker.run_once():
            return
    raise AssertionError("a round did not end: writes kept being due again at once")


def contact_statuses(app: Flask, shop_id: int) -> Counter[str]:
    with get_database(app).sessionmaker() as session:
        return Counter(session.scalars(sa.select(Contact.sync_status).where(Contact.shop_id == shop_id)))


def failing_since(app: Flask, shop_id: int) -> list[datetime | None]:
    """When each write still waiting first failed (None: only ever throttled, which is no failure)."""
    with get_database(app).sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(OutboxItem.first_failed_at).where(
                    OutboxItem.shop_id == shop_id, OutboxItem.status == "pending"
                )
            )
        )


@pytest.mark.parametrize(
    ("platform", "outlasts_give_up"),
    [("shopify", False), ("shopline", True)],
    ids=["shopify-recovers", "shopline-gives-up-then-retried"],
)
def test_an_outage_then_recovery_lands_every_write_once(
    fresh_database: sa.Engine, devstore: RunningDevStore, platform: str, outlasts_give_up: bool
) -> None:
    app = make_app(fresh_database, devstore, SYNC_GIVE_UP_AFTER="1500")
    shop_id = add_shops(app)[platform]
    seed_contacts(app, shop_id, COUNT)
    clock = Clock()
    worker = Worker(
        get_database(app),
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        clock=clock,
        rng=random.Random(9),
    )

    outage(devstore.store)
    for _ in range(4):  # 1600 s: four tries or more, none given up yet (SYNC_GIVE_UP_AFTER is 1500 s)
        run_round(worker, clock)
    # Reads that get through find the customers whose creation answers were lost, so a few writes may
    # finish; the others keep failing, the oldest for more than 1200 s (four tries and more).
    failing = failing_since(app, shop_id)
    assert failing, "no write was still waiting: the outage proved nothing"
    assert min(t for t in failing if t) <= clock.now - timedelta(seconds=3 * ROUND_SECONDS)
    assert contact_statuses(app, shop_id)["pending"] == len(failing)
    if outlasts_give_up:
        for _ in range(5):  # until each write has failed for longer than SYNC_GIVE_UP_AFTER
            if not failing_since(app, shop_id):
                break
            run_round(worker, clock)
        assert failing_since(app, shop_id) == []
        assert contact_statuses(app, shop_id)["failed"] == len(failing)
    faults = devstore.store.faults.counts
    assert {"error", "throttle", "timeout", "lost_answer"} <= set(faults), faults
    # Lost answers: some customers exist that popsync has not heard of.
    assert platform_customers(devstore.store, platform)

    recovery(devstore.store)
    if outlasts_give_up:
        with get_database(app).write_transaction() as session:
            key = create_api_key(session, session.get_one(Shop, shop_id))
        answer = app.test_client().post(
            "/api/v1/contacts/retry-sync", headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 202
        assert answer.json["queued"] == len(failing)
    run_round(worker, clock)
    worker.drain(30)
    assert_each_contact_once(app, devstore.store, platform, shop_id, COUNT)
