"""POST /storefront/submissions, to the contract: 200, 400, 404, 413, 422, CORS, durability."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import Database
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import Shop
from tests.conftest import add_shop

SHOP = "demo.myshopify.com"


def post(client: FlaskClient, body: object, **headers: str):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/storefront/submissions", data=data, content_type="application/json", headers=headers)


def all_contacts(db: Database) -> list[Contact]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Contact).order_by(Contact.id)))


def test_an_accepted_submission_is_stored_before_the_answer(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    response = post(
        client,
        {
            "shop": SHOP,
            "email": " Ann@Example.com",
            "phone": "(415) 555-2671",
            "first_name": "Ann",
            "birthday": "1990-04-01",
            "gender": "female",
            "country": "us",
            "email_consent": True,
            "sms_consent": True,
            "page_url": "https://demo.myshopify.com/products/tea",
            "whatever": {"ignored": True},
        },
        **{"Origin": "https://demo.myshopify.com", "X-Forwarded-For": "198.51.100.1"},
    )
    assert response.status_code == 200
    assert response.json == {"ok": True}
    assert response.headers["Access-Control-Allow-Origin"] == "https://demo.myshopify.com"
    [contact] = all_contacts(db)
    assert (contact.email, contact.phone, contact.country) == ("ann@example.com", "+14155552671", "US")
    assert (contact.email_consent, contact.sms_consent) == ("subscribed", "subscribed")
    with db.sessionmaker() as session:
        event = session.scalars(sa.select(ContactEvent)).one()
        assert event.data["page_url"] == "https://demo.myshopify.com/products/tea"
        assert event.data["client_ip"] == "127.0.0.1"  # PROXY_COUNT=0: the socket peer, not the header
        assert session.scalars(sa.select(OutboxItem)).one().kind == "push_contact"


def test_nothing_to_sync_still_answers_ok(client: FlaskClient, db: Database, shop: Shop) -> None:
    response = post(client, {"shop": SHOP, "first_name": "Ann", "country": "US"})
    assert response.status_code == 200
    assert response.json == {"ok": True}
    assert all_contacts(db) == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_a_body_that_is_not_a_json_object_is_400(client: FlaskClient, shop: Shop, body: bytes) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response.json["ok"] is False


def test_a_missing_shop_is_422_on_shop(client: FlaskClient) -> None:
    response = post(client, {"email": "a@example.com"})
    assert response.status_code == 422
    assert response.json == {"ok": False, "errors": {"shop": "is required"}}


@pytest.mark.parametrize("domain", ["nope.myshopify.com", "evil.com", "demo.myshopify.com.evil.com"])
def test_an_unknown_shop_is_404(client: FlaskClient, shop: Shop, domain: str) -> None:
    assert post(client, {"shop": domain, "email": "a@example.com"}).status_code == 404


def test_an_uninstalled_shop_is_404(app: Flask, client: FlaskClient, db: Database, shop: Shop) -> None:
    with db.write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = sa.func.now()  # type: ignore[union-attr]
    assert post(client, {"shop": SHOP, "email": "a@example.com"}).status_code == 404


def test_bad_fields_are_422_naming_each_field(client: FlaskClient, db: Database, shop: Shop) -> None:
    response = post(
        client,
        {
            "shop": SHOP,
            "email": "ann@",
            "phone": "12",
            "gender": "robot",
            "country": "XX",
            "birthday": "soon",
        },
    )
    assert response.status_code == 422
    assert response.json["ok"] is False
    assert set(response.json["errors"]) == {"email", "phone", "gender", "country", "birthday"}
    assert all_contacts(db) == []


def test_a_body_over_64_kb_is_413(client: FlaskClient, shop: Shop) -> None:
    response = post(client, {"shop": SHOP, "email": "a@example.com", "padding": "x" * 70_000})
    assert response.status_code == 413


def test_a_national_phone_is_read_in_the_shop_region(app: Flask, client: FlaskClient, db: Database) -> None:
    add_shop(app, "uk.myshopify.com", region="GB")
    assert post(client, {"shop": "uk.myshopify.com", "phone": "020 7946 0958"}).status_code == 200
    assert all_contacts(db)[0].phone == "+442079460958"


def test_cors_preflight_allows_the_shop_storefront_only(client: FlaskClient, shop: Shop) -> None:
    allowed = client.options(
        "/storefront/submissions",
        headers={"Origin": "https://demo.myshopify.com", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://demo.myshopify.com"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    refused = client.options(
        "/storefront/submissions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_a_post_from_another_shops_origin_is_refused(
    app: Flask, client: FlaskClient, db: Database, shop: Shop
) -> None:
    add_shop(app, "other.myshopify.com")
    response = post(client, {"shop": SHOP, "email": "a@example.com"}, Origin="https://other.myshopify.com")
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert all_contacts(db) == []


# --- forms, evidence and bots ------------------------------------------------------------------------


def add_form(db: Database, shop: Shop, **values: object) -> int:
    from app.models import Form
    from app.storefront.forms import validate_form

    with db.write_transaction() as session:
        form = Form(shop_id=shop.id, **validate_form({"name": "Welcome", "tag": "popsync-welcome", **values}))
        session.add(form)
        session.flush()
        return form.id


def daily_submissions(db: Database, form_id: int) -> int:
    from app.models import FormDailyStat

    with db.sessionmaker() as session:
        return sum(
            session.scalars(sa.select(FormDailyStat.submissions).where(FormDailyStat.form_id == form_id))
        )


def test_the_form_tag_reaches_the_contact_and_the_platform_customer(
    app: Flask, client: FlaskClient, db: Database, shop: Shop
) -> None:
    from app.jobs import Worker
    from tests.fakes import MemoryPlatform

    form_id = add_form(db, shop)
    response = post(client, {"shop": SHOP, "form_id": str(form_id), "email": "ann@example.com"})
    assert response.json == {"ok": True}
    [contact] = all_contacts(db)
    assert contact.tags == ["popsync-welcome"]
    assert contact.pending_tags == ["popsync-welcome"]
    with db.sessionmaker() as session:
        assert session.scalars(sa.select(OutboxItem.kind)).all() == ["push_contact"]

    platform = MemoryPlatform()
    worker = Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        client_factory=lambda _shop: platform,
    )
    worker.run(until_idle=True)
    [customer] = platform.customers.values()
    assert customer.email == "ann@example.com"
    assert "popsync-welcome" in customer.tags
    assert daily_submissions(db, form_id) == 1


def test_another_shops_form_adds_no_tag(app: Flask, client: FlaskClient, db: Database, shop: Shop) -> None:
    other = add_shop(app, "other.myshopify.com")
    other_form = add_form(db, other, tag="not-yours")
    post(client, {"shop": SHOP, "form_id": other_form, "email": "ann@example.com"})
    [contact] = all_contacts(db)
    assert contact.tags == []
    assert daily_submissions(db, other_form) == 0


def test_the_submitted_event_keeps_the_consent_evidence(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    form_id = add_form(db, shop)
    post(
        client,
        {
            "shop": SHOP,
            "form_id": str(form_id),
            "email": "ann@example.com",
            "phone": "+14155552671",
            "email_consent": True,
            "sms_consent": False,
            "email_consent_text": "Yes, email me offers",
            "sms_consent_text": "Yes, text me",
            "locale": "fr",
            "page_url": "https://demo.myshopify.com/collections/sale",
            "elapsed_ms": 5000,
        },
    )
    with db.sessionmaker() as session:
        event = session.scalars(sa.select(ContactEvent)).one()
    assert event.kind == "submitted"
    data = event.data
    assert data["form_id"] == str(form_id)
    assert data["email_consent_text"] == "Yes, email me offers"
    assert "sms_consent_text" not in data  # that box was not ticked: its text is no consent
    assert data["page_url"] == "https://demo.myshopify.com/collections/sale"
    assert data["client_ip"] == "127.0.0.1"
    assert data["locale"] == "fr"
    assert data["submitted_at"].startswith(str(event.occurred_at.year))


@pytest.mark.parametrize(
    "trap",
    [{"website": "http://spam.example"}, {"website": "x"}, {"elapsed_ms": 200}, {"elapsed_ms": 1499.9}],
)
def test_a_bot_is_answered_ok_and_nothing_is_synced(
    client: FlaskClient, db: Database, shop: Shop, trap: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    form_id = add_form(db, shop)
    caplog.set_level("INFO", logger="popsync.storefront")
    response = post(client, {"shop": SHOP, "form_id": form_id, "email": "bot@example.com", **trap})
    assert response.status_code == 200
    assert response.json == {"ok": True}
    assert all_contacts(db) == []
    assert daily_submissions(db, form_id) == 0
    assert "bot@example.com" not in caplog.text
    assert any("not synced" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("fill", [{"elapsed_ms": 1500}, {"elapsed_ms": 60_000}, {"website": ""}, {}])
def test_a_person_who_took_their_time_is_synced(
    client: FlaskClient, db: Database, shop: Shop, fill: dict[str, object]
) -> None:
    assert post(client, {"shop": SHOP, "email": "ann@example.com", **fill}).json == {"ok": True}
    assert len(all_contacts(db)) == 1
