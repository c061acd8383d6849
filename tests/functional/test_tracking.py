"""Open and click tracking over HTTP: the pixel, the redirect, unsubscribe, minting, and the worker's sync."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app import create_app
from app.cli import tracking_group
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.contacts.service import MirrorService
from app.db import Database
from app.db import utcnow
from app.enums import Source
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import Shop
from app.models import TrackingHit
from app.tracking.drain import HitDrain
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from app.tracking.views import PIXEL
from tests.conftest import app_config

ORIGIN = "http://popsync.test"
ANN = "ann@example.com"
PHONE = "+14155552671"
HUMAN = {
    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"
}


@pytest.fixture
def app_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


def mint(client: FlaskClient, auth: dict[str, str], **body: Any) -> dict[str, str]:
    body.setdefault("channel", "email")
    body.setdefault("message_id", "m-1")
    response = client.post("/api/v1/tracking-links", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def path(url: str) -> str:
    assert url.startswith(ORIGIN)
    return url[len(ORIGIN) :]


def drain(service: ContactService) -> int:
    total = 0
    while done := HitDrain(service).run_once():
        total += done
    return total


def hits(db: Database) -> list[TrackingHit]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(TrackingHit).order_by(TrackingHit.id)))


def contacts(db: Database, shop: Shop) -> list[Contact]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(sa.select(Contact).where(Contact.shop_id == shop.id).order_by(Contact.id))
        )


def events(db: Database, contact_id: int, kind: str) -> list[ContactEvent]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(ContactEvent).where(
                    ContactEvent.contact_id == contact_id, ContactEvent.kind == kind
                )
            )
        )


def assert_pixel(response: Any) -> None:
    assert response.status_code == 200
    assert response.mimetype == "image/gif"
    assert response.data == PIXEL
    assert response.headers["Cache-Control"] == "no-store"


# --- the pixel -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["nope", "A" * 120, "%00", "x" * 5000, "AQ", "..", "a.b"])
def test_the_pixel_answers_the_gif_for_any_token(client: FlaskClient, db: Database, token: str) -> None:
    assert_pixel(client.get(f"/t/o/{token}.gif"))
    assert hits(db) == []


def test_the_pixel_answers_head_without_a_body_and_no_other_method(
    client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    url = path(mint(client, auth, email=ANN)["open_url"])
    head = client.head(url, headers=HUMAN)
    assert head.status_code == 200
    assert head.mimetype == "image/gif"
    assert head.data == b""
    assert head.headers["Content-Length"] == str(len(PIXEL))
    assert head.headers["X-Request-Id"]
    assert client.post(url, headers=HUMAN).status_code == 405
    assert hits(db) == []  # neither records an open: mail clients and scanners only GET an image
    response = client.get(url, headers=HUMAN)
    assert_pixel(response)
    assert response.headers["X-Request-Id"]
    assert len(hits(db)) == 1


def test_the_flask_view_behind_the_endpoint_answers_and_records_the_same(
    app: Flask, client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    url = path(mint(client, auth, email=ANN)["open_url"])
    token = url[len("/t/o/") : -len(".gif")]
    with app.test_request_context(url, headers=HUMAN):
        response = app.view_functions["tracking.open_pixel"](token=token)
    assert_pixel(response)
    assert response.headers["Content-Length"] == str(len(PIXEL))
    assert [(hit.kind, hit.message_id) for hit in hits(db)] == [("open", "m-1")]


@pytest.mark.parametrize("app_extra", [{"PROXY_COUNT": "1"}], indirect=True)
def test_the_pixel_records_the_readers_address_as_the_proxy_forwarded_it(
    client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    url = path(mint(client, auth, email=ANN)["open_url"])
    forwarded = {**HUMAN, "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    assert_pixel(client.get(url, headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.2"}))
    [hit] = hits(db)
    assert hit.client_address == "203.0.113.9"  # one proxy: its entry, never the one the client sent
    assert (hit.agent, hit.machine) == ("human", False)


def test_a_valid_open_is_recorded_and_synced_once_per_message_and_recipient(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    first = mint(client, auth, email=ANN, message_id="welcome")
    second = mint(client, auth, email=ANN, message_id="follow-up")
    for _ in range(3):
        assert_pixel(client.get(path(first["open_url"]), headers=HUMAN))
    assert_pixel(client.get(path(second["open_url"]), headers=HUMAN))
    recorded = hits(db)
    assert [(h.kind, h.message_id, h.agent, h.machine) for h in recorded] == [
        ("open", "welcome", "human", False)
    ] * 3 + [("open", "follow-up", "human", False)]
    assert all(h.processed_at is None for h in recorded)
    assert contacts(db, shop) == []  # the request only recorded; the worker syncs

    assert drain(service) == 4
    [contact] = contacts(db, shop)
    assert (contact.email, contact.source) == (ANN, "open")
    opened = events(db, contact.id, "opened")
    assert sorted(e.data["message_id"] for e in opened) == ["follow-up", "welcome"]
    assert all(h.contact_id == contact.id and h.token is None for h in hits(db))
    with db.sessionmaker() as session:  # rule 9: the sync writes the platform customer
        assert session.scalar(sa.select(sa.func.count()).where(OutboxItem.contact_id == contact.id)) == 1

    assert_pixel(client.get(path(first["open_url"]), headers=HUMAN))  # opened again later
    assert drain(service) == 1
    assert len(events(db, contact.id, "opened")) == 2
    assert len(hits(db)) == 5


def test_machine_opens_are_flagged_and_still_sync(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    urls = mint(client, auth, email=ANN)
    assert_pixel(client.get(path(urls["open_url"]), headers={"User-Agent": "Mozilla/5.0"}))
    google = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    assert_pixel(client.get(path(urls["open_url"]), headers={"User-Agent": google}))
    assert [(h.agent, h.machine) for h in hits(db)] == [("apple_mpp", True), ("google_image_proxy", True)]
    drain(service)
    [contact] = contacts(db, shop)
    [event] = events(db, contact.id, "opened")
    assert event.data["machine"] is True
    assert event.data["agent"] == "apple_mpp"


def test_an_expired_link_answers_but_records_nothing(
    client: FlaskClient, app: Flask, db: Database, shop: Shop
) -> None:
    old = TrackingLink(shop.id, "email", "m", utcnow() - timedelta(days=800), email=ANN)
    token = seal(app.extensions["popsync.keyring"], old)
    assert_pixel(client.get(f"/t/o/{token}.gif"))
    assert hits(db) == []


def test_an_uninstalled_shops_links_record_nothing(
    client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    urls = mint(client, auth, email=ANN, url="https://shop.example/x")
    with db.write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = utcnow()  # type: ignore[union-attr]
    assert_pixel(client.get(path(urls["open_url"])))
    assert client.get(path(urls["click_url"])).status_code == 302
    assert hits(db) == []


def test_the_pixel_answers_when_the_database_is_unreachable(shop: Shop, app: Flask) -> None:
    broken = create_app(app_config("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    token = seal(
        broken.extensions["popsync.keyring"], TrackingLink(shop.id, "email", "m", utcnow(), email=ANN)
    )
    client = broken.test_client()
    assert_pixel(client.get(f"/t/o/{token}.gif"))
    click_token = seal(
        broken.extensions["popsync.keyring"],
        TrackingLink(shop.id, "email", "m", utcnow(), email=ANN, url="https://shop.example/"),
    )
    answer = client.get(f"/t/c/{click_token}")
    assert (answer.status_code, answer.headers["Location"]) == (302, "https://shop.example/")


# --- the rules -------------------------------------------------------------------------------------------


def test_names_from_a_link_fill_only_empty_names(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    service.sync(shop.id, Collected(email=ANN, first_name="Ann"), source=Source.FORM)
    urls = mint(client, auth, email=ANN, first_name="Annabel", last_name="Lee")
    client.get(path(urls["open_url"]))
    drain(service)
    [contact] = contacts(db, shop)
    assert (contact.first_name, contact.last_name) == ("Ann", "Lee")

    new = mint(client, auth, email="bo@example.com", first_name="Bo", last_name="Diddley")
    client.get(path(new["open_url"]))
    drain(service)
    assert (contacts(db, shop)[1].first_name, contacts(db, shop)[1].last_name) == ("Bo", "Diddley")


@pytest.mark.parametrize("consent", [ConsentIntent.SUBSCRIBE, ConsentIntent.UNSUBSCRIBE, None])
def test_opens_and_clicks_never_change_consent(
    client: FlaskClient,
    db: Database,
    service: ContactService,
    shop: Shop,
    auth: dict[str, str],
    consent: ConsentIntent | None,
) -> None:
    service.sync(
        shop.id,
        Collected(email=ANN, phone=PHONE, email_consent=consent, sms_consent=consent),
        source=Source.FORM,
    )
    before = contacts(db, shop)[0]
    for channel in ("email", "sms"):
        urls = mint(client, auth, channel=channel, email=ANN, phone=PHONE, url="https://shop.example/")
        client.get(path(urls["open_url"]))
        client.get(path(urls["click_url"]))
    drain(service)
    [after] = contacts(db, shop)
    assert (after.email_consent, after.sms_consent) == (before.email_consent, before.sms_consent)


def test_suppressed_identifiers_record_nothing(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    urls = mint(client, auth, email=ANN, url="https://shop.example/")
    client.get(path(urls["open_url"]))  # recorded before the erasure, synced after it
    service.sync(shop.id, Collected(email=ANN), source=Source.FORM)
    MirrorService(service).erase_person(shop.id, customer_id=None, emails=[ANN], phones=[])
    assert_pixel(client.get(path(urls["open_url"])))
    assert client.get(path(urls["click_url"])).status_code == 302
    assert len(hits(db)) == 1
    drain(service)
    assert hits(db) == []
    assert contacts(db, shop) == []


# --- clicks ----------------------------------------------------------------------------------------------


def test_a_click_redirects_to_the_sealed_url_and_an_sms_recipient_syncs_by_phone(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    urls = mint(client, auth, channel="sms", phone="(415) 555-2671", url="https://shop.example/sale?x=1#top")
    answer = client.get(path(urls["click_url"]))
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://shop.example/sale?x=1#top"
    [hit] = hits(db)
    assert (hit.kind, hit.message_id) == ("click", "m-1")
    drain(service)
    [contact] = contacts(db, shop)
    assert (contact.phone, contact.email, contact.source) == (PHONE, None, "click")
    assert len(events(db, contact.id, "clicked")) == 1


def test_a_bad_click_token_is_404_without_location(client: FlaskClient, app: Flask, shop: Shop) -> None:
    for token in ("nope", "A" * 200):
        answer = client.get(f"/t/c/{token}")
        assert answer.status_code == 404
        assert "Location" not in answer.headers
    no_url = seal(app.extensions["popsync.keyring"], TrackingLink(shop.id, "email", "m", utcnow(), email=ANN))
    assert client.get(f"/t/c/{no_url}").status_code == 404  # an open token leads nowhere


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_input_ever_redirects_anywhere_but_the_sealed_url(
    client: FlaskClient, app: Flask, shop: Shop, data: st.DataObject
) -> None:
    sealed_url = "https://shop.example/landing"
    token = seal(
        app.extensions["popsync.keyring"],
        TrackingLink(shop.id, "email", "m", utcnow(), email=ANN, url=sealed_url),
    )
    mutated = data.draw(
        st.one_of(
            st.text(
                alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#%"),
                max_size=300,
            ),
            st.builds(
                lambda i, c: token[:i] + c + token[i + 1 :],
                st.integers(0, len(token) - 1),
                st.sampled_from("ABCxyz019-_"),
            ),
            st.builds(lambda n: token[:n], st.integers(0, len(token))),
            st.just(token),
        )
    )
    if not mutated:
        return
    answer = client.get(f"/t/c/{mutated}")
    if answer.status_code == 302:
        assert answer.headers["Location"] == sealed_url
    else:
        assert answer.status_code == 404
        assert "Location" not in answer.headers


# --- unsubscribe -----------------------------------------------------------------------------------------


def test_the_unsubscribe_page_changes_nothing_and_a_post_unsubscribes_every_holder(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    service.sync(shop.id, Collected(email=ANN, email_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM)
    service.sync(
        shop.id, Collected(email=ANN, phone=PHONE, email_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM
    )
    other_phone = "+14155550123"
    service.sync(
        shop.id,
        Collected(email="zed@example.com", phone=other_phone, email_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
    )
    with db.write_transaction() as session:  # pretend the pushes went out
        session.execute(sa.delete(OutboxItem))
        session.execute(sa.update(Contact).values(sync_status="synced", pending_fields=[]))
    # Another contact holding the same email (a different phone: rule 4 made a second contact).
    service.sync(
        shop.id,
        Collected(email=ANN, phone="+14155550999", email_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
    )
    urls = mint(client, auth, email=ANN)
    page = client.get(path(urls["unsubscribe_url"]))
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert "a•••@example.com" in page.text
    assert "<script" not in page.text
    assert "http" not in page.text.split("</style>")[1]
    assert {c.email_consent for c in contacts(db, shop)} == {"subscribed"}

    answer = client.post(
        path(urls["unsubscribe_url"]),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200
    holders = [c for c in contacts(db, shop) if c.email == ANN]
    assert len(holders) >= 2
    assert {c.email_consent for c in holders} == {"unsubscribed"}
    assert all(c.email_consent_source == "unsubscribe_link" for c in holders)
    assert [c.email_consent for c in contacts(db, shop) if c.email != ANN] == ["subscribed"]
    with db.sessionmaker() as session:
        queued = set(session.scalars(sa.select(OutboxItem.contact_id).where(OutboxItem.status == "pending")))
    assert {c.id for c in holders} <= queued  # rule 9: the platform customer hears of it
    assert all("email_consent" in c.pending_fields for c in holders)
    assert all(len(events(db, c.id, "unsubscribed")) == 1 for c in holders)

    assert client.post(path(urls["unsubscribe_url"]), data=b"anything").status_code == 200  # again: fine
    assert all(len(events(db, c.id, "unsubscribed")) == 1 for c in holders)


def test_an_sms_unsubscribe_reaches_the_phone_and_a_bad_link_is_404(
    client: FlaskClient, db: Database, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    service.sync(shop.id, Collected(phone=PHONE, sms_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM)
    urls = mint(client, auth, channel="sms", phone=PHONE)
    assert "•••2671" in client.get(path(urls["unsubscribe_url"])).text
    assert client.post(path(urls["unsubscribe_url"])).status_code == 200
    assert contacts(db, shop)[0].sms_consent == "unsubscribed"
    assert client.get("/u/garbage").status_code == 404
    assert client.post("/u/garbage").status_code == 404


# --- minting ---------------------------------------------------------------------------------------------


def test_minting_one_and_many(client: FlaskClient, auth: dict[str, str]) -> None:
    one = mint(client, auth, email=ANN, url="https://shop.example/")
    assert set(one) == {"open_url", "click_url", "unsubscribe_url"}
    assert one["open_url"].startswith(f"{ORIGIN}/t/o/")
    assert one["open_url"].endswith(".gif")
    assert len(path(one["open_url"])) < 200 + len("/t/o/.gif")
    assert ANN not in json.dumps(one)
    assert set(mint(client, auth, email=ANN)) == {"open_url", "unsubscribe_url"}

    recipients = [{"channel": "email", "email": f"p{i}@example.com", "message_id": "m"} for i in range(1000)]
    recipients[7]["url"] = "https://shop.example/"
    answer = client.post("/api/v1/tracking-links", json={"recipients": recipients}, headers=auth)
    assert answer.status_code == 201
    links = answer.json["links"]
    assert len(links) == 1000
    assert "click_url" in links[7]
    assert "click_url" not in links[6]


def test_minting_validation_names_the_field(client: FlaskClient, auth: dict[str, str]) -> None:
    def errors(body: Any) -> dict[str, str]:
        answer = client.post("/api/v1/tracking-links", json=body, headers=auth)
        assert answer.status_code == 422, answer.json
        return answer.json["errors"]

    assert "url" in errors(
        {"channel": "email", "email": ANN, "message_id": "m", "url": "javascript:alert(1)"}
    )
    assert "url" in errors({"channel": "email", "email": ANN, "message_id": "m", "url": "ftp://x.example"})
    assert "email" in errors({"channel": "email", "message_id": "m"})
    assert "phone" in errors({"channel": "sms", "email": ANN, "message_id": "m"})
    assert "channel" in errors({"channel": "fax", "email": ANN, "message_id": "m"})
    assert "message_id" in errors({"channel": "email", "email": ANN})
    assert "email" in errors({"channel": "email", "email": "not-an-email", "message_id": "m"})
    batch = [{"channel": "email", "email": ANN, "message_id": "m"}] * 5
    batch = [*batch[:3], {"channel": "email", "email": "nope", "message_id": "m"}, batch[4], 7]
    assert set(errors({"recipients": batch})) == {"recipients[3].email", "recipients[5]"}
    assert "recipients" in errors({"recipients": [batch[0]] * 1001})
    assert "recipients" in errors({"recipients": []})
    assert client.post("/api/v1/tracking-links", data="[", headers=auth).status_code == 400
    assert client.post("/api/v1/tracking-links", json={"channel": "email"}).status_code == 401


def test_minting_from_a_csv(client: FlaskClient, auth: dict[str, str]) -> None:
    upload = (
        "Email,Phone,First_Name,message_id,url,extra\r\n"
        "ann@example.com,,=HYPERLINK(1),m1,https://shop.example/a,keep\r\n"
        ",+14155552671,,m2,,@x\r\n"
    )
    answer = client.post(
        "/api/v1/tracking-links.csv",
        data={"file": (io.BytesIO(upload.encode()), "r.csv")},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert answer.status_code == 201, answer.data
    assert answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == [
        "Email",
        "Phone",
        "First_Name",
        "message_id",
        "url",
        "extra",
        "open_url",
        "click_url",
        "unsubscribe_url",
    ]
    assert rows[0]["First_Name"] == "'=HYPERLINK(1)"
    assert rows[0]["extra"] == "keep"
    assert rows[0]["click_url"].startswith(f"{ORIGIN}/t/c/")
    assert rows[1]["Phone"] == "'+14155552671"
    assert rows[1]["extra"] == "'@x"
    assert rows[1]["click_url"] == ""
    assert rows[1]["open_url"].startswith(f"{ORIGIN}/t/o/")

    bad = client.post(
        "/api/v1/tracking-links.csv",
        data={"file": (io.BytesIO(b"email,url\nann@example.com,javascript:x\n"), "r.csv"), "message_id": "m"},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422
    assert set(bad.json["errors"]) == {"rows[2].url"}
    no_column = client.post(
        "/api/v1/tracking-links.csv",
        data={"file": (io.BytesIO(b"name\nAnn\n"), "r.csv")},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert no_column.status_code == 422
    assert "file" in no_column.json["errors"]


def test_the_cli_prints_the_links(app: Flask, client: FlaskClient, shop: Shop, db: Database) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        tracking_group,
        [
            "link",
            "--domain",
            shop.domain,
            "--email",
            ANN,
            "--message-id",
            "m",
            "--url",
            "https://shop.example/",
        ],
    )
    assert result.exit_code == 0, result.output
    links = json.loads(result.output)
    assert set(links) == {"open_url", "click_url", "unsubscribe_url"}
    assert_pixel(client.get(path(links["open_url"])))
    assert len(hits(db)) == 1

    bad_url = runner.invoke(
        tracking_group,
        ["link", "--domain", shop.domain, "--email", ANN, "--message-id", "m", "--url", "ftp://x"],
    )
    assert bad_url.exit_code != 0
    assert "--url" in bad_url.output
    neither = runner.invoke(tracking_group, ["link", "--domain", shop.domain, "--message-id", "m"])
    assert neither.exit_code != 0
    unknown = runner.invoke(
        tracking_group, ["link", "--domain", "nobody.myshopify.com", "--email", ANN, "--message-id", "m"]
    )
    assert unknown.exit_code != 0
    assert "nobody.myshopify.com" in unknown.output
