"""The merchant's admin pages (app/admin/pages.py): who may open them, in which mode, and the session cookie
with its CSRF token on the JSON API they call."""

from __future__ import annotations

from datetime import date
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.admin.pages import build_chart
from app.auth.admin import CSRF_HEADER
from app.auth.admin import csrf_token
from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import seal_session
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import get_database
from app.db import utcnow
from app.enums import Source
from app.models import Contact
from app.models import Shop
from tests.conftest import add_shop
from tests.conftest import app_config
from tests.unit.test_session_tokens import API_KEY
from tests.unit.test_session_tokens import SECRET
from tests.unit.test_session_tokens import make_session_token

PAGES = [
    "/admin",
    "/admin/contacts",
    "/admin/segments",
    "/admin/segments/new",
    "/admin/import",
    "/admin/export",
    "/admin/forms",
    "/admin/forms/new",
    "/admin/embed",
]
EMBEDDED = {"shop": "demo.myshopify.com", "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw", "embedded": "1"}


@pytest.fixture
def app_extra() -> dict[str, Any]:
    return {"SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": SECRET}


def sign_in(app: Flask, client: FlaskClient, shop: Shop) -> str:
    """Give the client an admin session for ``shop``; the session's CSRF token."""
    value = seal_session(app.extensions["popsync.keyring"], shop, utcnow())
    client.set_cookie(COOKIE_NAME, value)
    with app.test_request_context():
        return csrf_token(value)


def contact_of(app: Flask, service: ContactService, shop: Shop, email: str) -> int:
    service.sync(shop.id, Collected(email=email, first_name="Ann"), source=Source.FORM)
    with get_database(app).sessionmaker() as session:
        return session.scalar(sa.select(Contact.id).where(Contact.shop_id == shop.id, Contact.email == email))


# --- pages: who may open them ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_with_a_session(app: Flask, client: FlaskClient, shop: Shop, path: str) -> None:
    sign_in(app, client, shop)
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert b"<h1>" in response.data
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", PAGES)
def test_without_a_session_a_page_is_refused(client: FlaskClient, shop: Shop, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert b"Open popsync from your store admin" in response.data
    assert b"demo.myshopify.com" not in response.data


def test_inside_the_shopify_admin_without_an_id_token_the_page_is_patched(
    client: FlaskClient, shop: Shop
) -> None:
    response = client.get("/admin/contacts", query_string=EMBEDDED)
    assert response.status_code == 302
    assert response.location.startswith("/auth/patch-id-token?")
    assert "shopify-reload=%2Fadmin%2Fcontacts%3F" in response.location


def test_a_forged_or_stale_id_token_is_not_a_login(client: FlaskClient, shop: Shop) -> None:
    forged = make_session_token(secret="shpss_someone_elses_secret_0123456789ab")
    assert client.get("/admin/contacts", query_string={"id_token": forged}).status_code == 401
    patched = client.get("/admin/contacts", query_string={**EMBEDDED, "id_token": forged})
    assert patched.status_code == 302
    assert patched.location.startswith("/auth/patch-id-token?")


def test_a_tampered_or_expired_cookie_is_no_session(app: Flask, client: FlaskClient, shop: Shop) -> None:
    client.set_cookie(COOKIE_NAME, "not-a-session")
    assert client.get("/admin").status_code == 401
    assert client.get("/api/v1/contacts").status_code == 401
    old = seal_session(app.extensions["popsync.keyring"], shop, utcnow() - timedelta(hours=13))
    client.set_cookie(COOKIE_NAME, old)
    assert client.get("/admin/contacts").status_code == 401


def test_the_embedded_mode_loads_app_bridge_and_the_standalone_mode_does_not(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    embedded = client.get("/admin/contacts", query_string={**EMBEDDED, "id_token": make_session_token()})
    assert embedded.status_code == 200
    page = embedded.get_data(as_text=True)
    assert "https://cdn.shopify.com/shopifycloud/app-bridge.js" in page
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in page
    # App Bridge goes before any other script (App Store requirement 2.2.3).
    assert page.index("app-bridge.js") < page.index("admin.js")
    assert "popsync-csrf" not in page
    assert embedded.headers["Content-Security-Policy"].endswith(
        "frame-ancestors https://demo.myshopify.com https://admin.shopify.com"
    )
    # Links keep Shopify's parameters (never the token) so the next page can get a fresh one.
    assert 'href="/admin/forms?shop=demo.myshopify.com&amp;host=' in page
    assert "id_token" not in page.split("<body", 1)[1]

    csrf = sign_in(app, client, shop)
    standalone = client.get("/admin/contacts").get_data(as_text=True)
    assert "app-bridge.js" not in standalone
    assert "shopify-api-key" not in standalone
    assert f'<meta name="popsync-csrf" content="{csrf}">' in standalone


def test_the_shopify_app_home_is_the_embedded_dashboard(client: FlaskClient, shop: Shop) -> None:
    response = client.get("/", query_string={**EMBEDDED, "id_token": make_session_token()})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "popsync is installed on demo.myshopify.com" in page
    assert "app-bridge.js" in page
    assert "New contacts, last 30 days" in page
    assert 'href="/admin/contacts?shop=demo.myshopify.com' in page


def test_another_shops_contact_page_is_404(
    app: Flask, client: FlaskClient, service: ContactService, shop: Shop
) -> None:
    other = add_shop(app, "other.myshopify.com")
    theirs = contact_of(app, service, other, "their@example.com")
    mine = contact_of(app, service, shop, "mine@example.com")
    sign_in(app, client, shop)
    assert client.get(f"/admin/contacts/{mine}").status_code == 200
    assert client.get(f"/admin/contacts/{theirs}").status_code == 404
    assert client.get("/admin/forms/999999").status_code == 404
    assert client.get("/admin/segments/999999").status_code == 404


def test_the_preview_page_holds_no_data_and_is_framed_only_by_popsync(client: FlaskClient) -> None:
    response = client.get("/admin/forms/preview")
    assert response.status_code == 200
    assert b'<script src="/storefront/popup.js" defer></script>' in response.data
    assert response.headers["Content-Security-Policy"].startswith("frame-ancestors 'self'")


def test_static_files_are_served(client: FlaskClient) -> None:
    for name in ("admin.css", "admin.js", "contacts.js", "form.js", "preview.js"):
        response = client.get(f"/admin/static/{name}")
        assert response.status_code == 200, name
        response.close()


# --- the session cookie on the JSON API -----------------------------------------------------------------


def test_the_session_cookie_authenticates_the_api(
    app: Flask, client: FlaskClient, service: ContactService, shop: Shop
) -> None:
    contact_of(app, service, shop, "ann@example.com")
    other = add_shop(app, "other.myshopify.com")
    contact_of(app, service, other, "theirs@example.com")
    sign_in(app, client, shop)
    response = client.get("/api/v1/contacts")
    assert response.status_code == 200
    assert [c["email"] for c in response.get_json()["contacts"]] == ["ann@example.com"]


def test_an_unsafe_request_needs_the_sessions_csrf_token(app: Flask, client: FlaskClient, shop: Shop) -> None:
    token = sign_in(app, client, shop)
    body = {"name": "Cross-site", "template": "newsletter"}
    # What a forged cross-site request can send: the cookie, but not our header (no CORS preflight passes).
    forged = client.post("/api/v1/forms", json=body, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert CSRF_HEADER in forged.get_json()["error"]
    wrong = client.post("/api/v1/forms", json=body, headers={CSRF_HEADER: "0" * 64})
    assert wrong.status_code == 403
    assert client.get("/api/v1/forms").get_json()["forms"] == []
    made = client.post("/api/v1/forms", json=body, headers={CSRF_HEADER: token})
    assert made.status_code == 201
    form_id = made.get_json()["id"]
    assert client.delete(f"/api/v1/forms/{form_id}").status_code == 403
    assert client.delete(f"/api/v1/forms/{form_id}", headers={CSRF_HEADER: token}).status_code == 204


def test_a_token_belongs_to_its_session(app: Flask, client: FlaskClient, shop: Shop) -> None:
    first = sign_in(app, client, shop)
    second = sign_in(app, client, shop)  # a new session (new cookie) has a new token
    assert first != second
    response = client.post(
        "/api/v1/forms", json={"name": "x", "template": "newsletter"}, headers={CSRF_HEADER: first}
    )
    assert response.status_code == 403


def test_bearer_credentials_need_no_csrf_token(client: FlaskClient, shop: Shop) -> None:
    token = make_session_token()
    response = client.post(
        "/api/v1/forms",
        json={"name": "Bearer", "template": "newsletter"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201


# --- the segment builder's count and the dashboard ------------------------------------------------------


def test_the_segment_builders_count(
    app: Flask, client: FlaskClient, service: ContactService, shop: Shop
) -> None:
    service.sync(
        shop.id, Collected(email="a@example.com", email_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM
    )
    service.sync(shop.id, Collected(email="b@example.com"), source=Source.FORM)
    body = {"match": "all", "conditions": [{"field": "email_consent", "op": "is", "value": "subscribed"}]}
    assert client.post("/admin/segments/count", json=body).status_code == 401
    token = sign_in(app, client, shop)
    assert client.post("/admin/segments/count", json=body).status_code == 403
    counted = client.post("/admin/segments/count", json=body, headers={CSRF_HEADER: token})
    assert counted.get_json() == {"count": 1}
    bad = client.post(
        "/admin/segments/count",
        json={"conditions": [{"field": "email_consent", "op": "is", "value": "maybe"}]},
        headers={CSRF_HEADER: token},
    )
    assert bad.status_code == 422
    assert "conditions[0].value" in bad.get_json()["errors"]


def test_the_import_page_says_how_fast_the_store_takes_writes_before_they_are_asked_for(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    # A Shopify shop whose budget popsync has not seen yet: the standard plan's 100 points a second, 40
    # points a push (app/jobs.py, PUSH_COST): 9,000 customers an hour, 10,000 in 66 minutes.
    sign_in(app, client, shop)
    page = " ".join(client.get("/admin/import").get_data(as_text=True).split())
    assert "about 9,000 customers an hour (66 minutes for 10,000)" in page


def test_the_dashboard_counts_the_shops_contacts(
    app: Flask, client: FlaskClient, service: ContactService, shop: Shop
) -> None:
    service.sync(
        shop.id, Collected(email="a@example.com", email_consent=ConsentIntent.SUBSCRIBE), source=Source.FORM
    )
    service.sync(shop.id, Collected(phone="+14155552671"), source=Source.FORM)
    other = add_shop(app, "other.myshopify.com")
    service.sync(other.id, Collected(email="z@example.com"), source=Source.FORM)
    sign_in(app, client, shop)
    page = client.get("/admin").get_data(as_text=True)
    assert '<p class="figure" data-testid="total-contacts">2</p>' in page
    assert "2 new contacts in the last 30 days; popup forms: 2" in page
    assert page.count("<rect x=") == 1  # one bar today (one source); the legend swatches have no x


def test_the_chart_stacks_sources_per_day() -> None:
    today = date(2026, 3, 31)
    chart = build_chart(
        {("2026-03-31", "form"): 3, ("2026-03-30", "import"): 1, ("2026-03-31", "platform"): 1}, today
    )
    assert chart.total == 5
    assert [bar.label for bar in chart.bars] == [
        "2026-03-30: 1 from imports",
        "2026-03-31: 3 from popup forms",
        "2026-03-31: 1 from store customers",
    ]
    form, platform = chart.bars[1], chart.bars[2]
    assert platform.y + platform.height == pytest.approx(form.y)  # stacked on top
    assert chart.ticks[0][1] == "0"


# --- the demo's way in ----------------------------------------------------------------------------------


def demo_app(engine: sa.Engine, connection: sa.Connection, **extra: Any) -> Flask:
    config = app_config(engine.url.render_as_string(hide_password=False), DATABASE_ENGINE=engine, **extra)
    application = create_app(config)
    application.config["TESTING"] = True
    get_database(application).bind_to(connection)
    return application


def test_the_demo_admin_route_is_development_only(engine: sa.Engine, connection: sa.Connection) -> None:
    production = demo_app(engine, connection, DEMO_STOREFRONT="1")
    add_shop(production)
    assert production.test_client().get("/demo/admin").status_code == 404

    development = demo_app(engine, connection, POPSYNC_ENV="development")
    client = development.test_client()
    response = client.get("/demo/admin")
    assert response.status_code == 302
    assert response.location == "/admin"
    assert COOKIE_NAME in response.headers["Set-Cookie"]
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert client.get("/admin").status_code == 200
