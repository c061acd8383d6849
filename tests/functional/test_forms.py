"""Popup forms: the admin API (CRUD, scoping, stats), GET /storefront/forms, the view beacon, popup.js and
the demo storefront page."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.db import Database
from app.db import utcnow
from app.models import Form
from app.models import FormDailyStat
from app.models import Shop
from app.storefront import stats
from app.storefront.views import POPUP_SCRIPT
from tests.conftest import add_api_key
from tests.conftest import add_shop
from tests.conftest import app_config

SHOP = "demo.myshopify.com"


def new_form(client: FlaskClient, auth: dict[str, str], **values: Any) -> dict[str, Any]:
    body = {
        "name": "Welcome",
        "template": "email_sms",
        "texts": {"en": {"title": "Join us", "submit": "Go"}, "fr": {"title": "Rejoignez-nous"}},
        "trigger": {"type": "delay", "delay_seconds": 3},
        "discount_code": "WELCOME10",
        "tag": "popsync-welcome",
        **values,
    }
    response = client.post("/api/v1/forms", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def set_stat(db: Database, form_id: int, days_ago: int, views: int, submissions: int) -> None:
    with db.write_transaction() as session:
        day = utcnow().date() - timedelta(days=days_ago)
        session.add(FormDailyStat(form_id=form_id, day=day, views=views, submissions=submissions))


# --- admin API ---------------------------------------------------------------------------------------


def test_create_read_list_update_delete(client: FlaskClient, auth: dict[str, str]) -> None:
    created = new_form(client, auth)
    assert created["name"] == "Welcome"
    assert created["template"] == "email_sms"
    assert [f["name"] for f in created["fields"]] == ["email", "phone"]
    assert created["active"] is True
    assert created["stats"] == {"days": 30, "views": 0, "submissions": 0, "conversion_rate": None}
    assert {"id", "texts", "trigger", "targeting", "default_locale", "discount_code", "tag"} <= set(created)
    assert {"created_at", "updated_at"} <= set(created)
    form_id = created["id"]

    assert client.get(f"/api/v1/forms/{form_id}", headers=auth).json == created
    assert [f["id"] for f in client.get("/api/v1/forms", headers=auth).json["forms"]] == [form_id]

    patched = client.patch(f"/api/v1/forms/{form_id}", json={"active": False, "tag": "vip"}, headers=auth)
    assert patched.status_code == 200
    assert (patched.json["active"], patched.json["tag"], patched.json["name"]) == (False, "vip", "Welcome")
    assert patched.json["updated_at"] >= created["updated_at"]

    assert client.delete(f"/api/v1/forms/{form_id}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/forms/{form_id}", headers=auth).status_code == 404
    assert client.delete(f"/api/v1/forms/{form_id}", headers=auth).status_code == 404


def test_bad_values_are_422_naming_the_field(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/forms", json={"name": "X", "trigger": {"delay_seconds": 601}, "tag": "a,b"}, headers=auth
    )
    assert response.status_code == 422
    assert response.json["errors"]["trigger.delay_seconds"] == "must be between 0 and 600"
    assert "tag" in response.json["errors"]
    form_id = new_form(client, auth)["id"]
    patched = client.patch(f"/api/v1/forms/{form_id}", json={"template": "quiz"}, headers=auth)
    assert patched.status_code == 422
    assert "template" in patched.json["errors"]
    assert client.get(f"/api/v1/forms/{form_id}", headers=auth).json["template"] == "email_sms"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'"x"'])
def test_a_body_that_is_not_an_object_is_400(client: FlaskClient, auth: dict[str, str], body: bytes) -> None:
    response = client.post("/api/v1/forms", data=body, content_type="application/json", headers=auth)
    assert response.status_code == 400


def test_forms_need_credentials(client: FlaskClient) -> None:
    assert client.get("/api/v1/forms").status_code == 401
    assert client.post("/api/v1/forms", json={"name": "X"}).status_code == 401


def test_another_shops_form_is_404(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    other = add_shop(app, "other.myshopify.com")
    other_auth = {"Authorization": f"Bearer {add_api_key(app, other)}"}
    theirs = new_form(client, other_auth, name="Theirs")["id"]
    mine = new_form(client, auth)["id"]
    assert [f["id"] for f in client.get("/api/v1/forms", headers=auth).json["forms"]] == [mine]
    assert client.get(f"/api/v1/forms/{theirs}", headers=auth).status_code == 404
    assert client.patch(f"/api/v1/forms/{theirs}", json={"name": "Mine now"}, headers=auth).status_code == 404
    assert client.delete(f"/api/v1/forms/{theirs}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/forms/{theirs}", headers=other_auth).json["name"] == "Theirs"


def test_stats_count_the_last_30_days(client: FlaskClient, db: Database, auth: dict[str, str]) -> None:
    form_id = int(new_form(client, auth)["id"])
    set_stat(db, form_id, 0, views=30, submissions=3)
    set_stat(db, form_id, 29, views=10, submissions=2)
    set_stat(db, form_id, 30, views=1000, submissions=1000)  # 31 days ago counting today: outside
    assert client.get(f"/api/v1/forms/{form_id}", headers=auth).json["stats"] == {
        "days": 30,
        "views": 40,
        "submissions": 5,
        "conversion_rate": 0.125,
    }


# --- GET /storefront/forms -------------------------------------------------------------------------------


def test_the_storefront_gets_the_active_forms_and_countries(
    client: FlaskClient, shop: Shop, auth: dict[str, str]
) -> None:
    active = new_form(client, auth)
    inactive = new_form(client, auth, name="Old", active=False)
    response = client.get(f"/storefront/forms?shop={SHOP}", headers={"Origin": "https://demo.myshopify.com"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert response.headers["ETag"]
    assert response.headers["Access-Control-Allow-Origin"] == "https://demo.myshopify.com"
    body = response.json
    assert [f["id"] for f in body["forms"]] == [active["id"]]
    assert inactive["id"] not in [f["id"] for f in body["forms"]]
    [form] = body["forms"]
    assert set(form) == {
        "id",
        "name",
        "template",
        "fields",
        "trigger",
        "targeting",
        "default_locale",
        "texts",
        "discount_code",
        "tag",
    }
    assert form["texts"]["fr"] == {"title": "Rejoignez-nous"}
    assert form["trigger"]["delay_seconds"] == 3
    assert {"code": "US", "name": "United States", "dial": "+1"} in body["countries"]


def test_the_forms_answer_is_cached_by_etag(client: FlaskClient, shop: Shop, auth: dict[str, str]) -> None:
    form_id = new_form(client, auth)["id"]
    first = client.get(f"/storefront/forms?shop={SHOP}")
    etag = first.headers["ETag"]
    again = client.get(f"/storefront/forms?shop={SHOP}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    client.patch(f"/api/v1/forms/{form_id}", json={"name": "Renamed"}, headers=auth)
    changed = client.get(f"/storefront/forms?shop={SHOP}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_a_foreign_origin_gets_no_cors_header(client: FlaskClient, shop: Shop) -> None:
    response = client.get(f"/storefront/forms?shop={SHOP}", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("query", ["", "?shop=", "?shop=nope.myshopify.com", "?shop=evil.com"])
def test_forms_of_an_unknown_shop_are_404(client: FlaskClient, shop: Shop, query: str) -> None:
    assert client.get(f"/storefront/forms{query}").status_code == 404


def test_forms_of_an_uninstalled_shop_are_404(client: FlaskClient, db: Database, shop: Shop) -> None:
    with db.write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = utcnow()  # type: ignore[union-attr]
    assert client.get(f"/storefront/forms?shop={SHOP}").status_code == 404


# --- the view beacon -------------------------------------------------------------------------------------


def views_of(db: Database, form_id: int) -> int:
    with db.sessionmaker() as session:
        return sum(session.scalars(sa.select(FormDailyStat.views).where(FormDailyStat.form_id == form_id)))


def test_a_view_is_counted_for_today(client: FlaskClient, db: Database, auth: dict[str, str]) -> None:
    form_id = new_form(client, auth)["id"]
    for _ in range(3):
        response = client.post(f"/storefront/forms/{form_id}/views", json={"shop": SHOP})
        assert response.status_code == 204
    # sendBeacon posts its JSON as text/plain
    beacon = client.post(
        f"/storefront/forms/{form_id}/views", data=f'{{"shop": "{SHOP}"}}', content_type="text/plain"
    )
    assert beacon.status_code == 204
    assert views_of(db, int(form_id)) == 4
    with db.sessionmaker() as session:
        assert session.scalars(sa.select(FormDailyStat.day)).all() == [utcnow().date()]
    assert client.get(f"/api/v1/forms/{form_id}", headers=auth).json["stats"]["views"] == 4


def test_a_view_of_an_unknown_form_or_shop_is_404(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    form_id = new_form(client, auth)["id"]
    other = add_shop(app, "other.myshopify.com")
    assert client.post("/storefront/forms/999999/views", json={"shop": SHOP}).status_code == 404
    assert (
        client.post(f"/storefront/forms/{form_id}/views", json={"shop": "nope.myshopify.com"}).status_code
        == 404
    )
    assert client.post(f"/storefront/forms/{form_id}/views", json={"shop": other.domain}).status_code == 404
    assert client.post(f"/storefront/forms/{form_id}/views", data=b"[]").status_code == 400


def test_concurrent_counts_are_exact(fresh_database: Any) -> None:
    """Many processes' beacons (separate apps, one real database) add up exactly: the upsert adds in SQL."""
    url = fresh_database.url.render_as_string(hide_password=False)
    apps = [create_app(app_config(url)) for _ in range(6)]
    shop = add_shop(apps[0])
    with fresh_database.begin() as connection:
        form_id = connection.execute(
            sa.insert(Form)
            .values(
                shop_id=shop.id,
                name="F",
                template="newsletter",
                fields=[],
                texts={},
                default_locale="en",
                trigger={},
                targeting={},
                active=True,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .returning(Form.id)
        ).scalar_one()
    start = threading.Barrier(len(apps))

    def beacon(application: Flask) -> None:
        from app.db import get_database

        start.wait()
        for _ in range(10):
            stats.count(get_database(application), form_id, "views")

    threads = [threading.Thread(target=beacon, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with fresh_database.connect() as connection:
        assert connection.scalar(sa.select(FormDailyStat.views).where(FormDailyStat.form_id == form_id)) == 60
    for application in apps:
        application.extensions["popsync.db"].engine.dispose()


# --- popup.js and the demo storefront ------------------------------------------------------------------


def test_the_popup_script_is_served_cacheable(client: FlaskClient) -> None:
    response = client.get("/storefront/popup.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/javascript")
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.data == POPUP_SCRIPT.read_bytes()
    again = client.get("/storefront/popup.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


@pytest.fixture
def app_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize("app_extra", [{"DEMO_STOREFRONT": "1"}], indirect=True)
def test_the_demo_store_page_embeds_the_popup(client: FlaskClient) -> None:
    response = client.get("/demo/store")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'id="popsync-root"' in page
    assert 'data-app-url="http://popsync.test"' in page
    assert f'data-shop="{SHOP}"' in page
    assert 'data-platform="shopify"' in page
    assert 'data-locale="en"' in page
    assert "data-proxy-path" not in page
    assert '<script src="/storefront/popup.js" defer></script>' in page
    assert "window.hostPageReady = true" in page
    assert 'data-locale="fr"' in client.get("/demo/store?locale=fr").get_data(as_text=True)


def test_the_demo_store_page_is_404_in_production(client: FlaskClient) -> None:
    assert client.get("/demo/store").status_code == 404


def test_the_demo_form_is_created_once(db: Database, shop: Shop) -> None:
    from app.demo import ensure_demo_form

    for _ in range(2):
        with db.write_transaction() as session:
            ensure_demo_form(session, session.get(Shop, shop.id))  # type: ignore[arg-type]
    with db.sessionmaker() as session:
        [form] = session.scalars(sa.select(Form).where(Form.shop_id == shop.id)).all()
    assert (form.template, form.active, form.discount_code) == ("email_sms", True, "WELCOME10")
    assert form.trigger["type"] == "delay"
    assert form.trigger["delay_seconds"] == 2
    assert set(form.texts) == {"en", "fr"}


@pytest.mark.nodb
def test_the_demo_storefront_setting(tmp_path: Any) -> None:
    from app.config import ConfigError
    from app.config import Settings

    base = {"SECRET_KEY": "x" * 32}
    assert Settings.from_mapping(base, str(tmp_path)).demo_storefront is False
    assert (
        Settings.from_mapping({**base, "POPSYNC_ENV": "development"}, str(tmp_path)).demo_storefront is True
    )
    assert Settings.from_mapping({**base, "DEMO_STOREFRONT": "1"}, str(tmp_path)).demo_storefront is True
    development_off = {**base, "POPSYNC_ENV": "development", "DEMO_STOREFRONT": "0"}
    assert Settings.from_mapping(development_off, str(tmp_path)).demo_storefront is False
    with pytest.raises(ConfigError, match="DEMO_STOREFRONT"):
        Settings.from_mapping({**base, "DEMO_STOREFRONT": "maybe"}, str(tmp_path))
