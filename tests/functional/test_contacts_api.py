"""GET /api/v1/contacts and /api/v1/contacts/<id>: authenticated by shop API keys and scoped to the shop."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import Database
from app.db import utcnow
from app.enums import Source
from app.models import ContactEvent
from app.models import Shop
from tests.conftest import add_api_key
from tests.conftest import add_shop

CONTACT_KEYS = {
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "birthday",
    "gender",
    "country",
    "email_consent",
    "sms_consent",
    "tags",
    "source",
    "platform_customer_id",
    "sync_status",
    "sync_detail",
    "created_at",
    "updated_at",
}


def seed(service: ContactService, shop: Shop) -> None:
    for record in (
        Collected(email="ann.lee@example.com", first_name="Ann", last_name="Lee"),
        Collected(email="bo@gmail.com", phone="+14155552671"),
        Collected(phone="+442079460958", first_name="Cy"),
        Collected(email="dee_x@example.com", email_consent=ConsentIntent.SUBSCRIBE),
    ):
        service.sync(shop.id, record, source=Source.FORM)


def test_credentials_are_required(client: FlaskClient, shop: Shop) -> None:
    assert client.get("/api/v1/contacts").status_code == 401
    assert client.get("/api/v1/contacts", headers={"Authorization": "Bearer psk_wrong"}).status_code == 401
    assert client.get("/api/v1/contacts", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/v1/contacts/1", headers={"Authorization": "Bearer "}).status_code == 401


def test_the_list_is_newest_first_with_the_contract_shape(
    client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    seed(service, shop)
    response = client.get("/api/v1/contacts", headers=auth)
    assert response.status_code == 200
    body = response.json
    assert body["next_cursor"] is None
    assert [c["email"] for c in body["contacts"]] == [
        "dee_x@example.com",
        None,
        "bo@gmail.com",
        "ann.lee@example.com",
    ]
    assert all(set(c) >= CONTACT_KEYS for c in body["contacts"])
    dee, cy, bo, ann = body["contacts"]
    assert (ann["name"], bo["name"], cy["name"], dee["name"]) == ("Ann Lee", "bo", "Cy", "dee_x")
    assert bo["first_name"] is None  # the prefix name is shown, never stored as a collected name
    assert dee["email_consent"] == "subscribed"
    assert ann["sync_status"] == "pending"


def test_search_and_channel_filters(
    client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    seed(service, shop)

    def emails(query: str) -> list[str | None]:
        return sorted(
            (c["email"] or c["phone"])
            for c in client.get(f"/api/v1/contacts?{query}", headers=auth).json["contacts"]
        )

    assert emails("q=LEE") == ["ann.lee@example.com"]
    assert emails("q=gmail") == ["bo@gmail.com"]
    assert emails("q=cy") == ["+442079460958"]
    assert emails("q=7946") == ["+442079460958"]
    assert emails("q=(415) 555") == ["bo@gmail.com"]
    assert emails("q=_x") == ["dee_x@example.com"]  # LIKE wildcards are literal
    assert emails("q=%25") == []
    assert emails("channel=sms") == ["+442079460958", "bo@gmail.com"]
    assert emails("channel=email&q=example") == ["ann.lee@example.com", "dee_x@example.com"]
    bad = client.get("/api/v1/contacts?channel=fax", headers=auth)
    assert bad.status_code == 422
    assert bad.json["errors"] == {"channel": "must be email or sms"}


def test_keyset_pages_cover_everything_once(
    client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    for i in range(7):
        service.sync(shop.id, Collected(email=f"p{i}@example.com"), source=Source.FORM)
    seen: list[str] = []
    cursor = ""
    while True:
        body = client.get(f"/api/v1/contacts?limit=3&cursor={cursor}", headers=auth).json
        seen += [c["email"] for c in body["contacts"]]
        if not body["next_cursor"]:
            break
        cursor = body["next_cursor"]
    assert seen == [f"p{i}@example.com" for i in reversed(range(7))]
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("cursor=garbage", "cursor")):
        response = client.get(f"/api/v1/contacts?{query}", headers=auth)
        assert response.status_code == 422
        assert field in response.json["errors"]


def test_detail_has_events_newest_first(
    client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    service.sync(
        shop.id, Collected(email="ann@example.com"), source=Source.FORM, evidence={"page_url": "https://x/"}
    )
    result = service.sync(shop.id, Collected(email="ann@example.com", first_name="Ann"), source=Source.OPEN)
    body = client.get(f"/api/v1/contacts/{result.contact_id}", headers=auth).json
    assert body["first_name"] == "Ann"
    assert [e["kind"] for e in body["events"]] == ["opened", "submitted"]
    assert body["events"][1]["page_url"] == "https://x/"
    assert all("occurred_at" in e for e in body["events"])


def test_the_consent_evidence_stays_in_the_detail_behind_years_of_opens(
    client: FlaskClient, service: ContactService, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    evidence = {"email_consent": True, "email_consent_text": "Yes, email me.", "page_url": "https://x/"}
    result = service.sync(
        shop.id,
        Collected(email="ann@example.com", email_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
        evidence=evidence,
    )
    submitted_at = utcnow()
    with db.write_transaction() as session:
        session.add_all(
            ContactEvent(
                shop_id=shop.id,
                contact_id=result.contact_id,
                kind="opened",
                occurred_at=submitted_at + timedelta(days=day),
                data={"message_id": f"m{day}"},
            )
            for day in range(1, 251)
        )
    events = client.get(f"/api/v1/contacts/{result.contact_id}", headers=auth).json["events"]
    assert len(events) == 201  # the newest 200, then the proof of consent
    assert [e["kind"] for e in events[:200]] == ["opened"] * 200
    assert events[0]["message_id"] == "m250"
    assert (events[-1]["kind"], events[-1]["email_consent_text"]) == ("submitted", "Yes, email me.")


def test_another_shops_contact_is_404(
    app: Flask, client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    other = add_shop(app, "other.myshopify.com")
    theirs = service.sync(other.id, Collected(email="x@example.com"), source=Source.FORM)
    assert client.get(f"/api/v1/contacts/{theirs.contact_id}", headers=auth).status_code == 404
    assert client.get("/api/v1/contacts", headers=auth).json["contacts"] == []
    other_key = add_api_key(app, other)
    mine = client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {other_key}"}).json["contacts"]
    assert [c["email"] for c in mine] == ["x@example.com"]
    assert client.get("/api/v1/contacts/999999", headers=auth).status_code == 404
