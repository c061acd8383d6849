"""Backfill on install and the daily reconciliation (app/pulls.py), run by the worker against an in-memory
platform; the scheduler of daily jobs; the merchant's view of the pulls. The same paths over HTTP against
the development store are in test_install_end_to_end.py."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import pulls
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.enums import OutboxKind
from app.enums import Source
from app.jobs import Worker
from app.models import Contact
from app.models import ContactEvent
from app.models import CustomerPull
from app.models import OutboxItem
from app.models import Shop
from app.models import UsedSignature
from app.platforms.base import AuthFailed
from app.platforms.base import BulkExport
from app.platforms.base import BulkExportStatus
from app.platforms.base import RetryLater
from tests.conftest import add_api_key
from tests.conftest import add_shop
from tests.fakes import Clock
from tests.fakes import MemoryPlatform


@pytest.fixture
def worker(
    app: Flask, db: Database, service: ContactService, platform: MemoryPlatform, clock: Clock
) -> Worker:
    worker = Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        clock=clock,
        rng=random.Random(3),
        client_factory=lambda shop: platform,
    )
    worker.pulls.step_seconds = 0.0  # one checkpoint per step: every step boundary is exercised
    return worker


def start(db: Database, shop: Shop, clock: Clock, kind: str = pulls.BACKFILL) -> int:
    with db.write_transaction() as session:
        if kind == pulls.BACKFILL:
            pull = pulls.start_backfill(session, session.get(Shop, shop.id), clock())  # type: ignore[arg-type]
        else:
            pull = pulls.start_reconcile(session, shop.id, clock())
        assert pull is not None
        return pull.id


def run(worker: Worker, clock: Clock, rounds: int = 200) -> int:
    """Run the worker until nothing is due, moving the clock over waits (a bulk export being prepared)."""
    steps = 0
    for _ in range(rounds):
        done = worker.run_once()
        steps += done
        if done:
            continue
        wait = worker.seconds_until_due()
        if wait is None:
            return steps
        clock.advance(wait + 0.01)
    raise AssertionError("the worker did not settle")


def the_pull(db: Database, pull_id: int) -> CustomerPull:
    with db.sessionmaker() as session:
        pull = session.get(CustomerPull, pull_id)
        assert pull is not None
        return pull


def contacts(db: Database, shop: Shop) -> list[Contact]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(sa.select(Contact).where(Contact.shop_id == shop.id).order_by(Contact.id))
        )


def seed(platform: MemoryPlatform) -> None:
    platform.add(email="ann@example.com", first_name="Ann", country="FR", has_address=True)
    platform.add(phone="+14155552671", last_name="Lee")
    platform.add(email="bob@example.com", phone="+14155550100", email_consent="unsubscribed")
    platform.add(email="cat@example.com", first_name="Cat")
    platform.add(first_name="Nobody")  # no email, no phone: nothing to add


def test_a_shopify_backfill_brings_every_customer_in_through_a_bulk_export(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock, service: ContactService
) -> None:
    seed(platform)
    platform.polls_until_done = 2
    # A contact that already exists is linked to its customer, not duplicated.
    existing = service.sync(shop.id, Collected(email="cat@example.com"), source=Source.FORM)
    worker.run(until_idle=True)  # its own push links it already: the backfill must leave it alone
    pull_id = start(db, shop, clock)
    run(worker, clock)

    pull = the_pull(db, pull_id)
    assert (pull.status, pull.total, pull.processed) == ("done", 5, 5)
    assert (pull.created, pull.error) == (3, None)
    assert pull.started_at is not None
    assert pull.finished_at is not None
    assert pull.cursor == {}
    assert platform.calls.count("bulk start") == 1
    assert platform.calls.count("bulk poll") == 3

    found = {c.email or c.phone: c for c in contacts(db, shop)}
    assert set(found) == {"ann@example.com", "+14155552671", "bob@example.com", "cat@example.com"}
    ann = found["ann@example.com"]
    assert (ann.source, ann.sync_status, ann.first_name, ann.country) == ("platform", "synced", "Ann", "FR")
    assert ann.platform_customer_id is not None
    assert ann.pending_fields == []
    assert found["bob@example.com"].email_consent == "unsubscribed"
    assert found["cat@example.com"].id == existing.contact_id
    # Nothing that came from the platform is written back to it: the one write is the form contact's.
    assert [c for c in platform.calls if c in ("create", "update", "tags")] == ["update"]


def test_a_backfill_resumes_where_it_stopped(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock, monkeypatch: Any
) -> None:
    for n in range(7):
        platform.add(email=f"p{n}@example.com")
    monkeypatch.setattr(pulls, "CHECKPOINT_EVERY", 3)
    platform.polls_until_done = 0
    pull_id = start(db, shop, clock)
    assert worker.run_once() == 1  # starts the export, and looks again in a few seconds
    clock.advance(pulls.BULK_POLL_SECONDS)
    assert worker.run_once() == 1  # finds it ready, reads 3 lines, checkpoints, hands back
    pull = the_pull(db, pull_id)
    assert (pull.status, pull.processed, pull.cursor["lines"]) == ("running", 3, 3)
    assert "storage.example" not in str(pull.cursor)  # the signed URL is sealed at rest

    # Another worker (a restart) carries on from the checkpoint: nobody is read twice.
    reads_before = platform.calls.count("bulk read")
    run(worker, clock)
    pull = the_pull(db, pull_id)
    assert (pull.status, pull.processed, pull.created) == ("done", 7, 7)
    assert platform.calls.count("bulk read") == reads_before + 2
    assert len(contacts(db, shop)) == 7


def test_an_expired_export_is_exported_again(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock
) -> None:
    seed(platform)
    platform.polls_until_done = 0
    platform.expired_urls.add("https://storage.example/1.jsonl")
    pull_id = start(db, shop, clock)
    run(worker, clock)
    assert platform.calls.count("bulk start") == 2
    assert the_pull(db, pull_id).status == "done"
    assert len(contacts(db, shop)) == 4


def test_a_failed_export_fails_the_pull_with_the_reason(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock, monkeypatch: Any
) -> None:
    platform.add(email="ann@example.com")
    monkeypatch.setattr(
        platform,
        "bulk_export",
        lambda operation_id: BulkExport(operation_id, BulkExportStatus.FAILED, error="ACCESS_DENIED"),
    )
    pull_id = start(db, shop, clock)
    run(worker, clock)
    pull = the_pull(db, pull_id)
    assert pull.status == "failed"
    assert "ACCESS_DENIED" in (pull.error or "")
    assert contacts(db, shop) == []


def test_a_shopline_backfill_reads_page_by_page(
    app: Flask, worker: Worker, db: Database, platform: MemoryPlatform, clock: Clock
) -> None:
    shop = add_shop(app, "demo.myshopline.com", "shopline")
    seed(platform)
    pull_id = start(db, shop, clock)
    run(worker, clock)
    pull = the_pull(db, pull_id)
    assert (pull.status, pull.processed, pull.created, pull.total) == ("done", 5, 4, None)
    assert platform.calls.count("list") == 3  # pages of two
    assert "bulk start" not in platform.calls


def test_throttling_and_errors_retry_the_step_without_losing_progress(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock
) -> None:
    seed(platform)
    platform.polls_until_done = 0
    platform.failures = [RetryLater("throttled", 2.0, throttled=True), RetryLater("503", 1.0)]
    pull_id = start(db, shop, clock)
    run(worker, clock)
    pull = the_pull(db, pull_id)
    assert (pull.status, pull.processed, pull.created) == ("done", 5, 4)


def test_a_revoked_token_fails_the_pull_and_parks_the_shop(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock
) -> None:
    seed(platform)
    platform.failures = [AuthFailed("revoked"), AuthFailed("revoked")]
    pull_id = start(db, shop, clock)
    run(worker, clock)
    pull = the_pull(db, pull_id)
    assert pull.status == "failed"
    assert "revoked" in (pull.error or "")


def test_a_pull_of_a_shop_that_uninstalled_stops(
    worker: Worker, db: Database, shop: Shop, platform: MemoryPlatform, clock: Clock
) -> None:
    seed(platform)
    pull_id = start(db, shop, clock)
    with db.write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = clock()  # type: ignore[union-attr]
    run(worker, clock)
    assert the_pull(db, pull_id).status == "failed"
    assert platform.calls == []


def test_a_reconciliation_reads_what_changed_since_the_last_pull(
    app: Flask, worker: Worker, db: Database, platform: MemoryPlatform, clock: Clock
) -> None:
    shop = add_shop(app, "demo.myshopline.com", "shopline")
    ann = platform.add(email="ann@example.com", first_name="Ann")
    bob = platform.add(email="bob@example.com", phone="+14155550100")
    run_backfill = start(db, shop, clock)
    run(worker, clock)
    assert the_pull(db, run_backfill).status == "done"

    # A day later: Ann changed her name and Bob unsubscribed on the platform, without a webhook reaching us.
    import dataclasses

    later = the_pull(db, run_backfill).started_at + timedelta(hours=5)  # type: ignore[operator]
    platform.customers[ann.id] = dataclasses.replace(ann, first_name="Anne", updated_at=later)
    platform.customers[bob.id] = dataclasses.replace(
        bob, email_consent="unsubscribed", updated_at=later + timedelta(seconds=1)
    )
    old = platform.add(email="old@example.com")  # changed long ago: the reconciliation does not read it
    platform.customers[old.id] = dataclasses.replace(old, updated_at=later - timedelta(days=30))
    clock.advance(86_400)
    pull_id = start(db, shop, clock, pulls.RECONCILE)
    pull = the_pull(db, pull_id)
    assert pull.kind == "reconcile"
    assert pull.updated_since == the_pull(db, run_backfill).started_at - pulls.RECONCILE_OVERLAP
    run(worker, clock)

    pull = the_pull(db, pull_id)
    assert (pull.status, pull.processed, pull.updated, pull.created) == ("done", 2, 2, 0)
    found = {c.email: c for c in contacts(db, shop)}
    assert set(found) == {"ann@example.com", "bob@example.com"}
    assert found["ann@example.com"].first_name == "Anne"
    assert found["bob@example.com"].email_consent == "unsubscribed"

    # The same changes read again (the overlap) change nothing and record nothing.
    with db.sessionmaker() as session:
        events = session.scalar(sa.select(sa.func.count(ContactEvent.id)))
    again = start(db, shop, clock, pulls.RECONCILE)
    run(worker, clock)
    assert the_pull(db, again).updated == 0
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count(ContactEvent.id))) == events


def test_a_reconciliation_without_a_finished_pull_is_a_backfill(
    db: Database, shop: Shop, clock: Clock
) -> None:
    with db.write_transaction() as session:
        pull = pulls.start_reconcile(session, shop.id, clock())
        assert pull is not None
        assert pull.kind == "backfill"
        # One pull at a time per shop.
        assert pulls.start_reconcile(session, shop.id, clock()) is None
        assert pulls.start_backfill(session, session.get(Shop, shop.id), clock()) is None  # type: ignore[arg-type]


def test_an_install_starts_one_backfill(db: Database, shop: Shop, clock: Clock) -> None:
    """Once per (re)install: a renewed token does not read every customer again."""
    with db.write_transaction() as session:
        current = session.get(Shop, shop.id)
        assert current is not None
        first = pulls.start_backfill(session, current, clock())
        assert first is not None
        first.status = pulls.DONE
        session.flush()
        assert pulls.start_backfill(session, current, clock()) is None
        current.installed_at = clock() + timedelta(seconds=1)  # reinstalled later
        assert pulls.start_backfill(session, current, clock() + timedelta(seconds=2)) is not None


# --- the scheduler ----------------------------------------------------------------------------------------


def jobs(db: Database, kind: str) -> list[OutboxItem]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == kind)))


def test_daily_jobs_are_started_once_a_day_per_shop(app: Flask, db: Database, clock: Clock) -> None:
    shopify = add_shop(app)
    shopline = add_shop(app, "demo.myshopline.com", "shopline")
    gone = add_shop(app, "gone.myshopify.com")
    with db.write_transaction() as session:
        session.get(Shop, gone.id).uninstalled_at = clock()  # type: ignore[union-attr]
        # A signature past its window is forgotten; one still inside it is kept.
        session.add(UsedSignature(purpose="t", digest="a" * 64, expires_at=clock() - timedelta(seconds=1)))
        session.add(UsedSignature(purpose="t", digest="b" * 64, expires_at=clock() + timedelta(minutes=5)))

    assert pulls.schedule_daily_jobs(db, clock()) == 2
    # Two workers looking at the same moment start nothing twice.
    assert pulls.schedule_daily_jobs(db, clock()) == 0
    with db.sessionmaker() as session:
        started = session.scalars(sa.select(CustomerPull).order_by(CustomerPull.shop_id)).all()
        assert [(p.shop_id, p.kind) for p in started] == [(shopify.id, "backfill"), (shopline.id, "backfill")]
        assert session.scalars(sa.select(UsedSignature.digest)).all() == ["b" * 64]
    assert [row.shop_id for row in jobs(db, OutboxKind.CHECK_WEBHOOKS)] == [shopline.id]

    # The next day: a reconciliation for the shop whose backfill finished, nothing new for the other.
    with db.write_transaction() as session:
        session.scalars(
            sa.select(CustomerPull).where(CustomerPull.shop_id == shopify.id)
        ).one().status = "done"
    clock.advance(86_400 + 1)
    assert pulls.schedule_daily_jobs(db, clock()) == 2
    with db.sessionmaker() as session:
        kinds = session.execute(
            sa.select(CustomerPull.shop_id, CustomerPull.kind).order_by(CustomerPull.id)
        ).all()
    assert [tuple(row) for row in kinds] == [
        (shopify.id, "backfill"),
        (shopline.id, "backfill"),
        (shopify.id, "reconcile"),
    ]
    assert len(jobs(db, OutboxKind.CHECK_WEBHOOKS)) == 2


def test_a_worker_that_schedules_runs_the_daily_jobs(
    app: Flask, db: Database, service: ContactService, platform: MemoryPlatform, clock: Clock
) -> None:
    shop = add_shop(app, "demo.myshopline.com", "shopline")
    platform.add(email="ann@example.com")
    checked: list[int] = []
    worker = Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        clock=clock,
        client_factory=lambda shop: platform,
        schedule_daily=True,
    )
    import app.platforms.shopline_webhooks as shopline_webhooks

    original = shopline_webhooks.check_shop
    shopline_webhooks.check_shop = lambda db, settings, keyring, shop_id, **kw: checked.append(shop_id)  # type: ignore[assignment]
    try:
        run(worker, clock)
    finally:
        shopline_webhooks.check_shop = original
    assert checked == [shop.id]
    assert [c.email for c in contacts(db, shop)] == ["ann@example.com"]


# --- the merchant's view ------------------------------------------------------------------------------


def test_the_merchant_sees_and_starts_pulls(
    app: Flask, client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str], clock: Clock
) -> None:
    assert client.get("/api/v1/customer-pulls", headers=auth).get_json() == {"pulls": []}
    started = client.post("/api/v1/customer-pulls", json={"kind": "backfill"}, headers=auth)
    assert started.status_code == 202
    body = started.get_json()
    assert (body["kind"], body["status"], body["processed"]) == ("backfill", "queued", 0)
    assert "cursor" not in body
    assert client.post("/api/v1/customer-pulls", json={"kind": "reconcile"}, headers=auth).status_code == 409
    bad = client.post("/api/v1/customer-pulls", json={"kind": "everything"}, headers=auth)
    assert (bad.status_code, bad.get_json()["errors"]) == (422, {"kind": "must be backfill or reconcile"})
    listed = client.get("/api/v1/customer-pulls", headers=auth).get_json()["pulls"]
    assert [p["id"] for p in listed] == [body["id"]]
    assert client.get(f"/api/v1/customer-pulls/{body['id']}", headers=auth).get_json()["id"] == body["id"]

    other = add_shop(app, "other.myshopify.com")
    other_auth = {"Authorization": f"Bearer {add_api_key(app, other)}"}
    assert client.get(f"/api/v1/customer-pulls/{body['id']}", headers=other_auth).status_code == 404
    assert client.get("/api/v1/customer-pulls", headers=other_auth).get_json() == {"pulls": []}
    assert client.get("/api/v1/customer-pulls").status_code == 401
