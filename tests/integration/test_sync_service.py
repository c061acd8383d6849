"""The sync service on a real database: one transaction per sync, with its event and its outbox row."""

from __future__ import annotations

from datetime import UTC
from datetime import date
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.contacts import service as service_module
from app.contacts.rules import Action
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import Shop
from tests.conftest import add_shop

A, B, C = "ann@example.com", "+14155552671", "+14155552672"


def contacts(db: Database, shop: Shop) -> list[Contact]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(sa.select(Contact).where(Contact.shop_id == shop.id).order_by(Contact.id))
        )


def rows(db: Database, model: Any, **where: Any) -> list[Any]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(model).filter_by(**where).order_by(model.id)))


def test_a_submission_creates_a_contact_with_its_event_and_outbox_row(
    service: ContactService, db: Database, shop: Shop
) -> None:
    result = service.sync(
        shop.id,
        Collected(email=A, first_name="Ann", email_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
        evidence={"page_url": "https://demo.myshopify.com/", "client_ip": "203.0.113.9"},
    )
    assert result.action is Action.CREATE
    [contact] = contacts(db, shop)
    assert (contact.email, contact.first_name, contact.email_consent) == (A, "Ann", "subscribed")
    assert contact.email_consent_source == "form"
    assert contact.source == "form"
    assert contact.sync_status == "pending"
    assert contact.pending_fields == ["email", "email_consent", "first_name"]
    [event] = rows(db, ContactEvent, contact_id=contact.id)
    assert event.kind == "submitted"
    assert event.data["action"] == "created"
    assert event.data["page_url"] == "https://demo.myshopify.com/"
    [push] = rows(db, OutboxItem, contact_id=contact.id)
    assert (push.kind, push.status) == ("push_contact", "pending")


def test_pending_changes_share_one_outbox_row(service: ContactService, db: Database, shop: Shop) -> None:
    service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    service.sync(shop.id, Collected(email=A, last_name="Lee", tags=("vip",)), source=Source.FORM)
    [contact] = contacts(db, shop)
    assert contact.pending_fields == ["email", "first_name", "last_name"]
    assert contact.pending_tags == ["vip"]
    assert len(rows(db, OutboxItem, contact_id=contact.id)) == 1


def test_the_same_submission_twice_changes_nothing(service: ContactService, db: Database, shop: Shop) -> None:
    record = Collected(email=A, phone=B, first_name="Ann", email_consent=ConsentIntent.SUBSCRIBE)
    service.sync(shop.id, record, source=Source.FORM)
    before = contacts(db, shop)[0].updated_at
    again = service.sync(shop.id, record, source=Source.FORM)
    assert again.action is Action.UPDATE
    assert again.changed == ()
    [contact] = contacts(db, shop)
    assert contact.updated_at == before
    events = rows(db, ContactEvent, contact_id=contact.id)
    assert [e.data["action"] for e in events] == ["created", "unchanged"]


def test_rule_4_creates_a_new_contact_when_the_other_identifier_differs(
    service: ContactService, db: Database, shop: Shop
) -> None:
    service.sync(shop.id, Collected(email=A, phone=C), source=Source.FORM)
    result = service.sync(shop.id, Collected(email=A, phone=B), source=Source.FORM)
    assert result.action is Action.CREATE
    assert [(c.email, c.phone) for c in contacts(db, shop)] == [(A, C), (A, B)]


def test_an_import_stays_local_unless_asked(service: ContactService, db: Database, shop: Shop) -> None:
    service.sync(shop.id, Collected(email=A, may_resubscribe=False), source=Source.IMPORT)
    [contact] = contacts(db, shop)
    assert contact.sync_status == "local"
    assert rows(db, OutboxItem) == []
    # A later submission writes it to the platform: everything it holds, since nothing was written yet.
    service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.FORM)
    [contact] = contacts(db, shop)
    assert contact.sync_status == "pending"
    assert contact.pending_fields == ["email", "first_name"]


def test_an_import_unsubscribe_reaches_every_holder(
    service: ContactService, db: Database, shop: Shop
) -> None:
    service.sync(
        shop.id, Collected(email=A, phone=B, email_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM
    )
    service.sync(
        shop.id, Collected(email=A, phone=C, email_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM
    )
    service.sync(
        shop.id,
        Collected(email=A, email_consent=ConsentIntent.UNSUBSCRIBE, may_resubscribe=False),
        source=Source.IMPORT,
        write_platform=True,
    )
    assert [c.email_consent for c in contacts(db, shop)] == ["unsubscribed", "unsubscribed"]
    assert [e.kind for e in rows(db, ContactEvent, kind="unsubscribed")] == ["unsubscribed"]
    assert all("email_consent" in c.pending_fields for c in contacts(db, shop))


def test_contacts_are_per_shop(app: Flask, service: ContactService, db: Database, shop: Shop) -> None:
    other = add_shop(app, "other.myshopify.com")
    service.sync(shop.id, Collected(email=A), source=Source.FORM)
    service.sync(other.id, Collected(email=A), source=Source.FORM)
    assert len(contacts(db, shop)) == 1
    assert len(contacts(db, other)) == 1


def test_nothing_identifying_and_no_customer_syncs_nothing(
    service: ContactService, db: Database, shop: Shop
) -> None:
    result = service.sync(shop.id, Collected(first_name="Ann", country="US"), source=Source.FORM)
    assert result.action is Action.SKIP
    assert contacts(db, shop) == []
    assert rows(db, OutboxItem) == []


def test_a_logged_in_customer_is_identified_by_the_worker(
    service: ContactService, db: Database, shop: Shop
) -> None:
    result = service.sync(
        shop.id, Collected(first_name="Ann", customer_id="gid://shopify/Customer/7"), source=Source.FORM
    )
    assert result.action is Action.IDENTIFY
    [job] = rows(db, OutboxItem)
    assert job.kind == "identify_customer"
    assert job.payload["customer_id"] == "gid://shopify/Customer/7"
    assert job.payload["values"] == {"first_name": "Ann"}
    # The worker then syncs with the customer's identifiers and links the contact.
    service.sync(
        shop.id,
        Collected(email=A, first_name="Ann"),
        source=Source.FORM,
        link_customer_id="gid://shopify/Customer/7",
    )
    assert contacts(db, shop)[0].platform_customer_id == "gid://shopify/Customer/7"


def test_suppressed_identifiers_stay_out_until_a_new_submission(
    service: ContactService, db: Database, shop: Shop
) -> None:
    with db.write_transaction() as session:
        service.suppress(session, shop.id, "email", A)
    assert service.sync(shop.id, Collected(email=A), source=Source.IMPORT).action is Action.SKIP
    assert service.sync(shop.id, Collected(email=A, phone=B), source=Source.OPEN).action is Action.SKIP
    assert contacts(db, shop) == []
    # A storefront submission is a new consent: accepted, and it lifts the suppression.
    assert service.sync(shop.id, Collected(email=A), source=Source.FORM).action is Action.CREATE
    assert (
        service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.IMPORT).action
        is Action.UPDATE
    )


def test_a_platform_change_is_never_written_back(service: ContactService, db: Database, shop: Shop) -> None:
    service.sync(shop.id, Collected(email=A, first_name="Ann"), source=Source.PLATFORM, write_platform=True)
    [contact] = contacts(db, shop)
    assert contact.sync_status == "synced"
    assert contact.source == "platform"
    assert rows(db, OutboxItem) == []


def _state(db: Database, shop: Shop) -> list[tuple[Any, ...]]:
    return [
        (
            c.email,
            c.phone,
            c.first_name,
            c.last_name,
            c.country,
            tuple(c.tags),
            c.email_consent,
            c.sms_consent,
        )
        for c in contacts(db, shop)
    ]


def test_a_batch_gives_the_same_contacts_as_its_records_one_by_one(
    app: Flask, service: ContactService, db: Database, shop: Shop
) -> None:
    records = [
        Collected(email=A, first_name="Ann"),
        Collected(phone=B, last_name="Lee"),
        Collected(email=A, phone=B, country="US"),  # A's contact (no phone) gains B
        Collected(email="bo@example.com", phone=B),  # the contact with B and no email gains it
        Collected(email=A, tags=("vip",), email_consent=ConsentIntent.UNSUBSCRIBE, may_resubscribe=False),
        Collected(phone=C, first_name="Cy"),
        Collected(email="cy@example.com", phone=C),  # C's contact has no email: gains it
        Collected(phone=B, first_name="Bo"),  # two contacts hold B: the most recently updated wins
    ]
    one_by_one = add_shop(app, "sequential.myshopify.com")
    for record in records:
        service.sync(one_by_one.id, record, source=Source.IMPORT)
    results = service.sync_batch(shop.id, records, source=Source.IMPORT)
    assert [r.action for r in results] == [
        Action.CREATE,
        Action.CREATE,
        Action.UPDATE,
        Action.UPDATE,
        Action.UPDATE,
        Action.CREATE,
        Action.UPDATE,
        Action.UPDATE,
    ]
    assert _state(db, shop) == _state(db, one_by_one)


@pytest.mark.postgresql
def test_a_batch_that_changes_many_contacts_writes_what_one_update_per_contact_writes(
    app: Flask, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch changing many stored contacts writes them in one statement from JSON (PostgreSQL): every
    synced column must come out as the executemany UPDATE, which a batch of a few changes still uses,
    writes it: timestamps to the microsecond, dates, tags with quotes and accents, values set to NULL."""
    moment = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    service = ContactService(db, app.extensions["popsync.keyring"], clock=lambda: moment)
    first = [
        Collected(email=f"p{i}@example.com", phone=f"+1415555{2600 + i}", first_name="Old", tags=("a",))
        for i in range(12)
    ]
    again = [
        Collected(
            email=f"p{i}@example.com",
            first_name=f'Zoë "{i}" O\'Brien',
            birthday=date(1990, 4, 1 + i),
            gender="female",
            country="GB",
            email_consent=ConsentIntent.SUBSCRIBE,
            tags=("a", 'b "quoted"', "ünï\\code"),
        )
        for i in range(12)
    ]

    def imported(shop: Shop) -> list[tuple[Any, ...]]:
        service.sync_batch(shop.id, first, source=Source.IMPORT, write_platform=True)
        results = service.sync_batch(shop.id, again, source=Source.IMPORT, write_platform=True)
        assert {r.action for r in results} == {Action.UPDATE}
        with db.sessionmaker() as session:
            found = session.scalars(sa.select(Contact).where(Contact.shop_id == shop.id).order_by(Contact.id))
            return [tuple(getattr(c, name) for name in service_module._SYNCED_COLUMNS) for c in found]

    one_statement = imported(add_shop(app, "json.myshopify.com"))
    monkeypatch.setattr(service_module, "_COPY_FROM_ROWS", 10_000)  # every write one row at a time
    row_by_row = imported(add_shop(app, "rows.myshopify.com"))
    assert one_statement == row_by_row
    first_contact = dict(zip(service_module._SYNCED_COLUMNS, one_statement[0], strict=True))
    assert first_contact["first_name"] == 'Zoë "0" O\'Brien'
    assert first_contact["tags"] == ["a", 'b "quoted"', "ünï\\code"]
    assert first_contact["email_consent_at"] == moment
    assert first_contact["birthday"] == date(1990, 4, 1)
    assert first_contact["sync_status"] == "pending"
