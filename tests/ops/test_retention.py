"""Event retention: contact events older than EVENT_RETENTION_DAYS go, in small batches, once a day per
worker; newer events, the contacts themselves and other tables stay."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app import metrics
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.db import get_database
from app.db import utcnow
from app.enums import EventKind
from app.enums import Source
from app.jobs import Worker
from app.models import Contact
from app.models import ContactEvent
from app.models import Shop
from app.ops.retention import EventPruner
from app.ops.retention import prune_events
from tests.conftest import add_shop
from tests.conftest import app_config


@pytest.fixture
def app_extra() -> dict[str, Any]:
    return {"EVENT_RETENTION_DAYS": "30"}


def add_events(db: Database, contact_id: int, shop_id: int, days_ago: list[float]) -> None:
    now = utcnow()
    kinds = list(EventKind)
    with db.write_transaction() as session:
        for index, days in enumerate(days_ago):
            session.add(
                ContactEvent(
                    shop_id=shop_id,
                    contact_id=contact_id,
                    kind=kinds[index % len(kinds)].value,
                    occurred_at=now - timedelta(days=days),
                    data={},
                )
            )


def event_ages(db: Database) -> list[int]:
    """Each remaining event's age in whole days, oldest first."""
    now = utcnow()
    with db.sessionmaker() as session:
        moments = session.scalars(sa.select(ContactEvent.occurred_at).order_by(ContactEvent.occurred_at))
        return [(now - moment).days for moment in moments]


def new_contact(service: ContactService, shop: Shop, email: str) -> int:
    result = service.sync(shop.id, Collected(email=email), source=Source.FORM)
    assert result.contact_id is not None
    return result.contact_id


def pruned_total(db: Database) -> float:
    for family in text_string_to_metric_families(metrics.render(db).decode()):
        for sample in family.samples:
            if sample.name == "popsync_events_pruned_total":
                return sample.value
    raise AssertionError("popsync_events_pruned_total is missing")


def test_events_older_than_the_window_go_in_batches_for_every_shop(
    app: Flask, db: Database, service: ContactService, shop: Shop
) -> None:
    other = add_shop(app, "other.myshopify.com")
    ann = new_contact(service, shop, "ann@example.com")
    bo = new_contact(service, other, "bo@example.com")
    add_events(db, ann, shop.id, [400, 45, 31, 29, 1])
    add_events(db, bo, other.id, [900, 500, 401, 30.5, 2])
    counted = pruned_total(db)

    deleted = prune_events(db, utcnow() - timedelta(days=30), batch=2)

    assert deleted == 7
    # Left: the two submissions (today), and the events younger than 30 days.
    assert event_ages(db) == [29, 2, 1, 0, 0]
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count(Contact.id))) == 2
    assert pruned_total(db) - counted == 7


def test_the_worker_prunes_a_bounded_slice_a_round_and_then_waits_a_day(
    db: Database, service: ContactService, shop: Shop
) -> None:
    ann = new_contact(service, shop, "ann@example.com")
    add_events(db, ann, shop.id, [100, 99, 98, 97, 96])
    # step_seconds=0: one batch a round, whatever the machine's speed.
    pruner = EventPruner(db, retention_days=30, batch=2, step_seconds=0)
    assert [pruner.run_once() for _ in range(4)] == [2, 2, 1, 0]
    assert event_ages(db) == [0]
    # The pass is over: nothing until a day has passed, even with new old events.
    add_events(db, ann, shop.id, [100])
    assert pruner.run_once() == 0
    assert len(event_ages(db)) == 2


def test_retention_zero_keeps_everything(db: Database, service: ContactService, shop: Shop) -> None:
    ann = new_contact(service, shop, "ann@example.com")
    add_events(db, ann, shop.id, [5000, 400])
    assert EventPruner(db, retention_days=0).run_once() == 0
    assert len(event_ages(db)) == 3


def test_a_running_worker_applies_event_retention_days(
    app: Flask, db: Database, service: ContactService, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only retention is looked at here: the daily pulls the same worker starts are tested in test_worker.py.
    monkeypatch.setattr("app.jobs.schedule_daily_jobs", lambda *_args, **_kwargs: 0)
    ann = new_contact(service, shop, "ann@example.com")
    add_events(db, ann, shop.id, [31, 29])
    worker = Worker(
        db, app.config["POPSYNC"], app.extensions["popsync.keyring"], service, schedule_daily=True
    )
    worker.run_once()
    assert event_ages(db) == [29, 0]
    # A hand-driven worker (tests, benchmarks) leaves events alone.
    add_events(db, ann, shop.id, [31])
    Worker(db, app.config["POPSYNC"], app.extensions["popsync.keyring"], service).run_once()
    assert len(event_ages(db)) == 3


@pytest.mark.postgresql
def test_pruning_skips_rows_another_transaction_holds_instead_of_waiting(
    fresh_database: sa.Engine, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    app = create_app(
        app_config(
            fresh_database.url.render_as_string(hide_password=False),
            DATABASE_ENGINE=fresh_database,
            POPSYNC_INSTANCE_PATH=str(tmp_path),
        )
    )
    db = get_database(app)
    shop = add_shop(app)
    ann = new_contact(app.extensions["popsync.contacts"], shop, "ann@example.com")
    add_events(db, ann, shop.id, [50, 40, 35])
    with fresh_database.connect() as holder:
        held = holder.execute(
            sa.select(ContactEvent.id)
            .where(ContactEvent.occurred_at < utcnow() - timedelta(days=45))
            .with_for_update()
        ).scalar_one()
        outcome: list[int] = []
        pruning = threading.Thread(
            target=lambda: outcome.append(prune_events(db, utcnow() - timedelta(days=30), batch=10))
        )
        started = time.monotonic()
        pruning.start()
        pruning.join(timeout=10)
        waited = time.monotonic() - started
        holder.rollback()
    assert outcome == [2]
    assert waited < 5
    with db.sessionmaker() as session:
        assert session.scalars(
            sa.select(ContactEvent.id).where(ContactEvent.occurred_at < utcnow() - timedelta(days=30))
        ).all() == [held]


def test_a_failing_pass_never_stops_the_worker_round(
    db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> int:
        raise sa.exc.OperationalError("DELETE", {}, Exception("server closed the connection"))

    monkeypatch.setattr("app.ops.retention.delete_expired_batch", broken)
    pruner = EventPruner(db, retention_days=30)
    assert pruner.run_once() == 0
    assert "retention pass failed" in caplog.text
    # Not retried at once (an hour later).
    monkeypatch.setattr("app.ops.retention.delete_expired_batch", lambda *_a, **_k: pytest.fail("retried"))
    assert pruner.run_once() == 0
