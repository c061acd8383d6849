"""PATCH /api/v1/contacts/<id>: the merchant's edit, validated as submissions are, applied in one transaction
with an ``edited`` event, reaching every holder on unsubscribe (rule 8), refused for an erased identifier
(rule 11), and queued for the platform with exactly the fields that changed (rule 9)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.contacts.service import MirrorService
from app.db import Database
from app.enums import Source
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import Shop
from tests.conftest import add_shop


def settle(db: Database, *contact_ids: int) -> None:
    """As if the worker had written everything: nothing pending, synced, no push waiting."""
    with db.write_transaction() as session:
        session.execute(
            sa.update(Contact)
            .where(Contact.id.in_(contact_ids))
            .values(pending_fields=[], pending_tags=[], sync_status="synced")
        )
        session.execute(
            sa.update(OutboxItem).where(OutboxItem.contact_id.in_(contact_ids)).values(status="done")
        )


def row(db: Database, contact_id: int) -> Contact:
    with db.sessionmaker() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        return contact


def waiting_pushes(db: Database, contact_id: int) -> int:
    with db.sessionmaker() as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(OutboxItem)
                .where(
                    OutboxItem.contact_id == contact_id,
                    OutboxItem.status == "pending",
                    OutboxItem.kind == "push_contact",
                )
            )
            or 0
        )


def events(db: Database, contact_id: int) -> list[ContactEvent]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(ContactEvent).where(ContactEvent.contact_id == contact_id).order_by(ContactEvent.id)
            )
        )


def make(service: ContactService, shop: Shop, **values: object) -> int:
    result = service.sync(shop.id, Collected(**values), source=Source.FORM)  # type: ignore[arg-type]
    assert result.contact_id is not None
    return result.contact_id


def test_an_edit_changes_fields_records_who_and_queues_exactly_the_changes(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str], api_key: str
) -> None:
    contact_id = make(service, shop, email="ann@example.com", first_name="Ann")
    settle(db, contact_id)
    before = row(db, contact_id)

    response = client.patch(
        f"/api/v1/contacts/{contact_id}",
        json={"first_name": " Anna ", "country": "fr", "birthday": "1990-04-01", "email": "ann@example.com"},
        headers=auth,
    )

    assert response.status_code == 200
    body = response.json
    assert (body["first_name"], body["country"], body["birthday"]) == ("Anna", "FR", "1990-04-01")
    assert body["updated_at"] > before.updated_at.isoformat()
    assert body["sync_status"] == "pending"
    after = row(db, contact_id)
    # The email was sent unchanged: it is not a change, so it is not written again.
    assert after.pending_fields == ["birthday", "country", "first_name"]
    assert waiting_pushes(db, contact_id) == 1
    edited = [e for e in events(db, contact_id) if e.kind == "edited"]
    assert len(edited) == 1
    assert edited[0].data["changed"] == ["birthday", "country", "first_name"]
    assert edited[0].data["actor"] == f"api key {api_key[:10]}"
    assert api_key not in str(edited[0].data)


def test_an_edit_that_changes_nothing_moves_nothing(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    contact_id = make(service, shop, email="ann@example.com", first_name="Ann")
    settle(db, contact_id)
    before = row(db, contact_id)
    response = client.patch(
        f"/api/v1/contacts/{contact_id}",
        json={"first_name": "Ann", "email": "ANN@example.com ", "id": 5, "name": "ignored", "source": "x"},
        headers=auth,
    )
    assert response.status_code == 200
    assert response.json["updated_at"] == before.updated_at.isoformat()
    assert response.json["sync_status"] == "synced"
    assert waiting_pushes(db, contact_id) == 0
    assert [e.kind for e in events(db, contact_id)] == ["submitted"]


def test_validation_is_the_submissions_and_names_each_field(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    contact_id = make(service, shop, email="ann@example.com")
    settle(db, contact_id)
    response = client.patch(
        f"/api/v1/contacts/{contact_id}",
        json={
            "email": "not-an-email",
            "phone": "12",
            "birthday": "1990-13-01",
            "gender": "robot",
            "country": "ZZ",
            "first_name": 7,
            "email_consent": "pending",
            "sms_consent": True,
            "tags": ["ok", "a,b"],
        },
        headers=auth,
    )
    assert response.status_code == 422
    errors = response.json["errors"]
    assert set(errors) == {
        "email",
        "phone",
        "birthday",
        "gender",
        "country",
        "first_name",
        "email_consent",
        "sms_consent",
        "tags[1]",
    }
    assert errors["email_consent"] == "must be one of subscribed, unsubscribed, not_subscribed"
    assert errors["tags[1]"] == "must not contain a comma"
    assert row(db, contact_id).email == "ann@example.com"
    assert client.patch(f"/api/v1/contacts/{contact_id}", json=["x"], headers=auth).status_code == 400
    assert client.patch(f"/api/v1/contacts/{contact_id}", json={"tags": "vip"}, headers=auth).json[
        "errors"
    ] == {"tags": "must be a list of strings"}


def test_blank_clears_a_field_locally_and_is_not_written_to_the_platform(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    contact_id = make(service, shop, email="ann@example.com", first_name="Ann", last_name="Lee")
    settle(db, contact_id)
    response = client.patch(
        f"/api/v1/contacts/{contact_id}", json={"last_name": None, "first_name": "  "}, headers=auth
    )
    assert response.status_code == 200
    assert (response.json["first_name"], response.json["last_name"]) == (None, None)
    assert response.json["name"] == "ann"  # rule 7: the email's prefix again
    # A platform write never erases a value: nothing to queue.
    assert row(db, contact_id).pending_fields == []
    assert waiting_pushes(db, contact_id) == 0


def test_a_contact_keeps_an_email_or_a_phone_and_consent_needs_its_identifier(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    contact_id = make(service, shop, email="ann@example.com", email_consent=ConsentIntent.SUBSCRIBE)
    response = client.patch(f"/api/v1/contacts/{contact_id}", json={"email": ""}, headers=auth)
    assert response.status_code == 422
    assert response.json["errors"] == {"email": "a contact needs an email or a phone"}
    response = client.patch(
        f"/api/v1/contacts/{contact_id}", json={"sms_consent": "subscribed"}, headers=auth
    )
    assert response.json["errors"] == {"sms_consent": "needs the contact's phone to subscribe"}
    # With a phone in the same edit it is fine; clearing the email then drops its consent too.
    response = client.patch(
        f"/api/v1/contacts/{contact_id}",
        json={"phone": "(415) 555-2671", "sms_consent": "subscribed", "email": None},
        headers=auth,
    )
    assert response.status_code == 200
    body = response.json
    assert (body["phone"], body["sms_consent"], body["email"], body["email_consent"]) == (
        "+14155552671",
        "subscribed",
        None,
        "not_subscribed",
    )


def test_an_unsubscribe_reaches_every_contact_with_that_email(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    # Rule 4: the same email with two different phones is two contacts.
    first = make(
        service, shop, email="ann@example.com", phone="+14155552671", email_consent=ConsentIntent.SUBSCRIBE
    )
    second = make(
        service, shop, email="ann@example.com", phone="+14155552672", email_consent=ConsentIntent.SUBSCRIBE
    )
    other = make(service, shop, email="bo@example.com", email_consent=ConsentIntent.SUBSCRIBE)
    assert first != second
    settle(db, first, second, other)

    response = client.patch(f"/api/v1/contacts/{first}", json={"email_consent": "unsubscribed"}, headers=auth)

    assert response.status_code == 200
    assert response.json["email_consent"] == "unsubscribed"
    reached = row(db, second)
    assert reached.email_consent == "unsubscribed"
    assert reached.email_consent_source == "merchant"
    assert reached.pending_fields == ["email_consent"]
    assert [e.kind for e in events(db, second)][-1] == "unsubscribed"
    assert waiting_pushes(db, first) == waiting_pushes(db, second) == 1
    assert row(db, other).email_consent == "subscribed"
    assert waiting_pushes(db, other) == 0


def test_an_erased_identifier_is_not_brought_back_by_an_edit(
    app: Flask, client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    make(service, shop, email="gone@example.com", phone="+14155552671")
    MirrorService(service).erase_person(shop.id, customer_id=None, emails=["gone@example.com"], phones=[])
    contact_id = make(service, shop, email="ann@example.com")

    for body, field in (({"email": "Gone@Example.com"}, "email"), ({"phone": "+1 415 555 2671"}, "phone")):
        response = client.patch(f"/api/v1/contacts/{contact_id}", json=body, headers=auth)
        assert response.status_code == 422
        assert "erased" in response.json["errors"][field]
    assert row(db, contact_id).email == "ann@example.com"
    # The refusal did not lift the suppression: a sync from an open still skips the erased email.
    result = service.sync(shop.id, Collected(email="gone@example.com"), source=Source.OPEN)
    assert result.contact_id is None


def test_an_email_another_contact_holds_is_allowed_and_the_contacts_stay_apart(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    ann = make(service, shop, email="ann@example.com", phone="+14155552671")
    bo = make(service, shop, email="bo@example.com", phone="+14155552672")
    response = client.patch(f"/api/v1/contacts/{bo}", json={"email": "ann@example.com"}, headers=auth)
    assert response.status_code == 200
    assert response.json["id"] == bo
    assert row(db, ann).email == row(db, bo).email == "ann@example.com"
    assert "email" in row(db, bo).pending_fields  # the platform write reports the conflict, if any


def test_a_local_contact_stays_local(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    result = service.sync(shop.id, Collected(email="imp@example.com"), source=Source.IMPORT)
    assert result.contact_id is not None
    response = client.patch(f"/api/v1/contacts/{result.contact_id}", json={"first_name": "Imp"}, headers=auth)
    assert response.status_code == 200
    assert response.json["sync_status"] == "local"
    assert waiting_pushes(db, result.contact_id) == 0
    assert [e.kind for e in events(db, result.contact_id)] == ["imported", "edited"]


def test_tags_are_replaced_locally_and_only_added_ones_go_to_the_platform(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    result = service.sync(shop.id, Collected(email="ann@example.com", tags=("a", "b")), source=Source.FORM)
    assert result.contact_id is not None
    settle(db, result.contact_id)
    response = client.patch(
        f"/api/v1/contacts/{result.contact_id}", json={"tags": ["b", " vip ", "vip"]}, headers=auth
    )
    assert response.json["tags"] == ["b", "vip"]
    contact = row(db, result.contact_id)
    assert (contact.pending_fields, contact.pending_tags) == ([], ["vip"])


def test_another_shops_contact_is_404(
    app: Flask, client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    other = add_shop(app, "other.myshopify.com")
    theirs = make(service, other, email="x@example.com")
    response = client.patch(f"/api/v1/contacts/{theirs}", json={"first_name": "Mallory"}, headers=auth)
    assert response.status_code == 404
    assert row(db, theirs).first_name is None
    assert client.patch("/api/v1/contacts/999999", json={}, headers=auth).status_code == 404
    assert client.patch(f"/api/v1/contacts/{theirs}", json={"first_name": "M"}).status_code == 401
