"""The outbox worker's bookkeeping (rule 9) against an in-memory platform with the platforms' rules."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from flask import Flask

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.jobs import Worker
from app.jobs import requeue_failed
from app.models import Contact
from app.models import OutboxItem
from app.models import Shop
from app.platforms.base import AuthFailed
from app.platforms.base import FailedForGood
from app.platforms.base import RetryLater
from tests.fakes import Clock
from tests.fakes import MemoryPlatform

A, B = "ann@example.com", "+14155552671"


@pytest.fixture
def worker(
    app: Flask, db: Database, service: ContactService, platform: MemoryPlatform, clock: Clock
) -> Worker:
    return Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        clock=clock,
        rng=random.Random(7),
        client_factory=lambda shop: platform,
    )


def contact(db: Database, contact_id: int) -> Contact:
    with db.sessionmaker() as session:
        return session.get(Contact, contact_id)  # type: ignore[return-value]


def outbox(db: Database) -> list[OutboxItem]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(OutboxItem).order_by(OutboxItem.id)))


def test_a_submission_creates_the_platform_customer(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    result = service.sync(
        shop.id,
        Collected(email=A, phone=B, first_name="Ann", email_consent=ConsentIntent.SUBSCRIBE, tags=("popup",)),
        source=Source.FORM,
    )
    assert worker.run(until_idle=True) == 1
    [customer] = platform.customers.values()
    assert (customer.email, customer.phone, customer.first_name, customer.email_consent) == (
        A,
        B,
        "Ann",
        "subscribed",
    )
    assert customer.tags == ("popup",)
    saved = contact(db, result.contact_id)
    assert saved.sync_status == "synced"
    assert saved.platform_customer_id == customer.id
    assert saved.platform_updated_at == customer.updated_at
    assert (saved.pending_fields, saved.pending_tags) == ([], [])
    assert [row.status for row in outbox(db)] == ["done"]


def test_the_prefix_name_is_never_written(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform
) -> None:
    service.sync(shop.id, Collected(email=A), source=Source.FORM)
    worker.run(until_idle=True)
    [customer] = platform.customers.values()
    assert customer.first_name is None


def test_an_existing_customer_is_updated_not_duplicated(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform
) -> None:
    existing = platform.add(email=A, first_name="Old", tags=("vip",))
    service.sync(shop.id, Collected(email=A, first_name="Ann", tags=("popup",)), source=Source.FORM)
    worker.run(until_idle=True)
    assert list(platform.customers) == [existing.id]
    assert platform.customers[existing.id].first_name == "Ann"
    assert platform.customers[existing.id].tags == ("vip", "popup")  # added, never replacing


def test_email_held_by_another_customer_is_a_conflict(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    holder = platform.add(email=A, phone="+14155559999")  # someone else: another phone
    result = service.sync(shop.id, Collected(email=A, phone=B, first_name="Ann"), source=Source.FORM)
    worker.run(until_idle=True)
    created = [c for c in platform.customers.values() if c.id != holder.id]
    assert len(created) == 1
    assert (created[0].email, created[0].phone, created[0].first_name) == (None, B, "Ann")
    saved = contact(db, result.contact_id)
    assert saved.sync_status == "conflict"
    assert holder.id in saved.sync_detail
    assert saved.platform_customer_id == created[0].id


def test_both_identifiers_held_by_others_writes_nothing(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    by_email = platform.add(email=A, phone="+14155559999")
    by_phone = platform.add(email="other@example.com", phone=B)
    result = service.sync(shop.id, Collected(email=A, phone=B, first_name="Ann"), source=Source.FORM)
    worker.run(until_idle=True)
    assert len(platform.customers) == 2
    assert "create" not in platform.calls
    assert "update" not in platform.calls
    saved = contact(db, result.contact_id)
    assert saved.sync_status == "conflict"
    assert by_email.id in saved.sync_detail
    assert by_phone.id in saved.sync_detail
    assert saved.platform_customer_id is None


def test_a_deleted_linked_customer_is_unlinked_and_written_again(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    result = service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    worker.run(until_idle=True)
    first = contact(db, result.contact_id).platform_customer_id
    platform.customers.clear()
    service.sync(shop.id, Collected(email=A, last_name="Lee"), source=Source.FORM)
    worker.run(until_idle=True)
    [customer] = platform.customers.values()
    assert customer.id != first
    assert contact(db, result.contact_id).platform_customer_id == customer.id


def test_pending_changes_coalesce_into_one_write(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform
) -> None:
    service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    service.sync(shop.id, Collected(email=A, first_name="Anne", last_name="Lee"), source=Source.FORM)
    assert worker.run(until_idle=True) == 1
    assert platform.calls.count("create") == 1
    [customer] = platform.customers.values()
    assert (customer.first_name, customer.last_name) == ("Anne", "Lee")  # the later value wins


def test_only_changed_fields_are_written(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform
) -> None:
    service.sync(shop.id, Collected(email=A, first_name="Ann", country="US"), source=Source.FORM)
    worker.run(until_idle=True)
    customer_id = next(iter(platform.customers))
    # The merchant renames the customer on the platform; a later sync of another field leaves the name alone.
    platform.customers[customer_id] = platform.customers[customer_id].__class__(
        **{**platform.customers[customer_id].__dict__, "first_name": "Annie"}
    )
    service.sync(shop.id, Collected(email=A, last_name="Lee"), source=Source.FORM)
    worker.run(until_idle=True)
    assert platform.customers[customer_id].first_name == "Annie"
    assert platform.customers[customer_id].last_name == "Lee"


def test_retries_back_off_and_give_up_after_the_limit(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database, clock: Clock
) -> None:
    result = service.sync(shop.id, Collected(email=A), source=Source.FORM)
    platform.failures = [RetryLater("503", 0) for _ in range(100)]
    delays = []
    while True:
        assert worker.run_once() == 1
        [row] = outbox(db)
        if row.status == "dead":
            break
        assert row.status == "pending"
        delays.append((row.due_at - clock.now).total_seconds())
        clock.advance(delays[-1])
    assert delays[0] < 1.01
    assert delays[:6] == sorted(delays[:6])  # exponential (with jitter) until the cap
    assert max(delays) <= 300
    assert (clock.now - clock.start).total_seconds() >= 3600
    failed = contact(db, result.contact_id)
    assert failed.sync_status == "failed"
    assert "gave up" in failed.sync_detail
    # The merchant asks again: it goes out and succeeds.
    platform.failures = []
    assert requeue_failed(db, shop.id) == 1
    worker.run(until_idle=True)
    assert contact(db, result.contact_id).sync_status == "synced"
    assert len(platform.customers) == 1


def test_throttling_is_not_a_failure(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database, clock: Clock
) -> None:
    service.sync(shop.id, Collected(email=A), source=Source.FORM)
    platform.failures = [RetryLater("throttled", 2.5, throttled=True)]
    worker.run_once()
    [row] = outbox(db)
    assert (row.status, row.attempts, row.first_failed_at) == ("pending", 0, None)
    assert (row.due_at - clock.now).total_seconds() == pytest.approx(2.5)
    assert worker.run_once() == 0  # not due yet: nothing is slept on
    clock.advance(2.5)
    worker.run(until_idle=True)
    assert len(platform.customers) == 1


def test_a_refused_token_parks_the_shop_until_it_is_restored(
    app: Flask, worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    result = service.sync(shop.id, Collected(email=A), source=Source.FORM)
    platform.failures = [AuthFailed("401")]
    worker.run(until_idle=True)
    with db.sessionmaker() as session:
        assert session.get(Shop, shop.id).needs_reauth is True  # type: ignore[union-attr]
    assert contact(db, result.contact_id).sync_status == "failed"
    assert requeue_failed(db, shop.id) == 1
    worker.run(until_idle=True)
    assert contact(db, result.contact_id).sync_status == "synced"


def test_a_refusal_for_good_is_failed_with_the_reason(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    result = service.sync(shop.id, Collected(email=A), source=Source.FORM)
    platform.failures = [FailedForGood("Email is invalid")]
    worker.run(until_idle=True)
    saved = contact(db, result.contact_id)
    assert saved.sync_status == "failed"
    assert "Email is invalid" in saved.sync_detail
    assert [row.status for row in outbox(db)] == ["dead"]


def test_an_expired_lease_is_reclaimed_and_looks_before_creating(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database, clock: Clock
) -> None:
    service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    [claim] = worker.claim(10)
    # The worker died after the platform created the customer but before recording it.
    platform.add(email=A, first_name="Ann")
    assert worker.run_once() == 0  # leased: nobody else takes it
    clock.advance(301)
    assert worker.run_once() == 0  # reclaimed, and backing off like any failed attempt
    clock.advance(5)
    worker.run(until_idle=True)
    assert len(platform.customers) == 1
    assert "create" not in platform.calls
    assert [row.status for row in outbox(db)] == ["done"]
    assert claim.attempts == 1


def test_a_logged_in_customer_is_fetched_and_linked(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    customer = platform.add(email="Ann@Example.com", phone=B)
    service.sync(shop.id, Collected(first_name="Ann", customer_id=customer.id), source=Source.FORM)
    worker.run(until_idle=True)
    with db.sessionmaker() as session:
        [saved] = session.scalars(sa.select(Contact)).all()
    assert (saved.email, saved.phone, saved.first_name) == (A, B, "Ann")
    assert saved.platform_customer_id == customer.id
    assert platform.customers[customer.id].first_name == "Ann"


def test_claims_go_round_the_shops(app: Flask, worker: Worker, service: ContactService, shop: Shop) -> None:
    from tests.conftest import add_shop

    other = add_shop(app, "other.myshopify.com")
    for i in range(5):
        service.sync(shop.id, Collected(email=f"p{i}@example.com"), source=Source.FORM)
    service.sync(other.id, Collected(email="x@example.com"), source=Source.FORM)
    claims = worker.claim(10)
    assert sorted(c.shop_id for c in claims) == sorted([shop.id, other.id])


# --- regressions found in review ---------------------------------------------------------------------


def test_consent_never_reaches_a_customer_with_another_phone(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    linked = platform.add(email=A, phone="+14155550000")
    platform.add(email="x@example.com", phone=B)
    service.sync(shop.id, Collected(email=A), source=Source.FORM)
    worker.run(until_idle=True)
    service.sync(
        shop.id, Collected(email=A, phone=B, sms_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM
    )
    worker.run(until_idle=True)
    assert platform.customers[linked.id].sms_consent is None  # +14155550000 never consented
    assert platform.customers[linked.id].phone == "+14155550000"


def test_a_new_customer_gets_everything_the_contact_holds(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    result = service.sync(
        shop.id, Collected(email=A, phone=B, first_name="Ann", tags=("popup",)), source=Source.FORM
    )
    worker.run(until_idle=True)
    platform.customers.clear()  # the merchant deleted the customer
    service.sync(shop.id, Collected(email=A, last_name="Lee"), source=Source.FORM)
    worker.run(until_idle=True)
    [customer] = platform.customers.values()
    assert (customer.email, customer.phone, customer.first_name, customer.last_name) == (A, B, "Ann", "Lee")
    assert customer.tags == ("popup",)
    assert contact(db, result.contact_id).platform_customer_id == customer.id


def test_nothing_written_keeps_everything_pending(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    by_email = platform.add(email=A, phone="+14155559999")
    by_phone = platform.add(email="other@example.com", phone=B)
    result = service.sync(
        shop.id, Collected(email=A, phone=B, first_name="Ann", tags=("popup",)), source=Source.FORM
    )
    worker.run(until_idle=True)
    saved = contact(db, result.contact_id)
    assert saved.sync_status == "conflict"
    assert "first_name" in saved.pending_fields
    assert saved.pending_tags == ["popup"]
    # The holders go away; the merchant retries: everything is written.
    del platform.customers[by_email.id]
    del platform.customers[by_phone.id]
    assert requeue_failed(db, shop.id, [result.contact_id]) == 1
    worker.run(until_idle=True)
    [customer] = platform.customers.values()
    assert (customer.email, customer.phone, customer.first_name, customer.tags) == (A, B, "Ann", ("popup",))
    assert contact(db, result.contact_id).sync_status == "synced"


def test_an_identifier_taken_by_nobody_found_fails_visibly(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    from app.platforms.base import IdentifierTaken

    result = service.sync(shop.id, Collected(email=A), source=Source.FORM)
    original = platform.create_customer

    def refuse(*args: object, **kwargs: object) -> object:
        raise IdentifierTaken(["email"])

    platform.create_customer = refuse  # type: ignore[method-assign]
    worker.run(until_idle=True)
    saved = contact(db, result.contact_id)
    assert saved.sync_status == "failed"
    assert "taken" in saved.sync_detail
    platform.create_customer = original  # type: ignore[method-assign]
    assert requeue_failed(db, shop.id) == 1
    worker.run(until_idle=True)
    assert contact(db, result.contact_id).sync_status == "synced"


def test_a_customer_appearing_mid_push_is_the_target_not_a_conflict(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    from app.platforms.base import IdentifierTaken

    result = service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    original = platform.create_customer

    def someone_was_faster(*args: object, **kwargs: object) -> object:
        platform.create_customer = original  # type: ignore[method-assign]
        platform.add(email=A)  # e.g. the shopper signed up on the storefront meanwhile
        raise IdentifierTaken(["email"])

    platform.create_customer = someone_was_faster  # type: ignore[method-assign]
    worker.run(until_idle=True)
    [customer] = platform.customers.values()
    saved = contact(db, result.contact_id)
    assert saved.platform_customer_id == customer.id
    assert saved.sync_status == "synced"
    assert customer.first_name == "Ann"


def test_a_late_outcome_after_a_takeover_is_dropped(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database, clock: Clock
) -> None:
    service.sync(shop.id, Collected(email=A), source=Source.FORM)
    [slow] = worker.claim(10)
    clock.advance(301)  # the slow worker's lease runs out; another takes the row over and finishes it
    worker.run_once()
    clock.advance(5)
    worker.run(until_idle=True)
    [row] = outbox(db)
    assert row.status == "done"
    worker.process(slow)  # the slow worker finally answers: its outcome must not touch the row
    assert [r.status for r in outbox(db)] == ["done"]
    assert len(platform.customers) == 1


def test_a_tag_removed_on_the_platform_is_not_put_back(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform
) -> None:
    import dataclasses

    service.sync(shop.id, Collected(email=A, tags=("popup",)), source=Source.FORM)
    worker.run(until_idle=True)
    [customer_id] = platform.customers
    platform.customers[customer_id] = dataclasses.replace(platform.customers[customer_id], tags=())
    service.sync(shop.id, Collected(email=A, tags=("spring",)), source=Source.FORM)
    worker.run(until_idle=True)
    assert platform.customers[customer_id].tags == ("spring",)


def test_a_logged_in_customers_identifiers_lift_no_erasure(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    customer = platform.add(email=A)
    with db.write_transaction() as session:
        service.suppress(session, shop.id, "email", A)
    service.sync(shop.id, Collected(first_name="Ann", customer_id=customer.id), source=Source.FORM)
    worker.run(until_idle=True)
    with db.sessionmaker() as session:
        assert session.scalars(sa.select(Contact)).all() == []


def test_an_unsubscribe_never_pushes_a_local_contact(
    worker: Worker, service: ContactService, shop: Shop, platform: MemoryPlatform, db: Database
) -> None:
    local = service.sync(shop.id, Collected(email=A, phone=B, may_resubscribe=False), source=Source.IMPORT)
    service.sync(
        shop.id,
        Collected(email=A, email_consent=ConsentIntent.UNSUBSCRIBE, may_resubscribe=False),
        source=Source.IMPORT,
        write_platform=True,
    )
    worker.run(until_idle=True)
    assert contact(db, local.contact_id).sync_status in ("local", "synced")
    assert all(c.email == A for c in platform.customers.values())
