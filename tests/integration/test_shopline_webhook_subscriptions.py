"""SHOPLINE webhook subscriptions: the development store's endpoints (reference/shopline.md §2.1) and
``ensure_subscriptions`` / ``check_shop`` against them on a real HTTP port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from app import create_app
from app.db import get_database
from app.db import utcnow
from app.models import Shop
from app.platforms.base import AuthFailed
from app.platforms.base import RetryLater
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.platforms.devstore import shopline_api
from app.platforms.shopline_webhooks import TOPICS
from app.platforms.shopline_webhooks import ShoplineWebhookApi
from app.platforms.shopline_webhooks import check_shop
from app.platforms.shopline_webhooks import ensure_subscriptions
from app.platforms.shopline_webhooks import webhook_address
from app.shops import access_token
from app.shops import register_shop
from tests.conftest import app_config

SECRET = "shopline-app-secret-for-tests"
VERSION = "v20260301"
DOMAIN = "demo.myshopline.com"
OTHER = "other.myshopline.com"
TOKEN = "demo-shopline-token"
OTHER_TOKEN = "other-shopline-token"
ADDRESS = "https://popsync.example.com/webhooks/shopline"


@pytest.fixture
def store() -> Iterator[DevStore]:
    store = DevStore(webhook_secrets={"shopline": SECRET})
    store.add_shop("shopline", DOMAIN, TOKEN)
    store.add_shop("shopline", OTHER, OTHER_TOKEN)
    yield store
    store.engine.dispose()


@pytest.fixture
def origin(store: DevStore) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="devstore-webhooks", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def webhook_api(origin: str, domain: str = DOMAIN, token: str = TOKEN) -> ShoplineWebhookApi:
    return ShoplineWebhookApi(domain=domain, access_token=token, api_version=VERSION, admin_origin=origin)


def call(
    origin: str, method: str, path: str, *, token: str = TOKEN, domain: str = DOMAIN, body: Any = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Host": domain}
    url = f"{origin}/admin/openapi/{VERSION}/{path}"
    return requests.request(method, url, json=body, headers=headers, timeout=10)


# -- the development store's endpoints ------------------------------------------------------------------


@pytest.mark.nodb
def test_devstore_subscribes_lists_counts_updates_and_deletes(origin: str) -> None:
    body = {"webhook": {"topic": "customers/create", "address": ADDRESS, "api_version": VERSION}}
    created = call(origin, "POST", "webhooks.json", body=body)
    assert created.status_code == 200
    webhook = created.json()["webhook"]
    assert isinstance(webhook["id"], int)
    assert (webhook["topic"], webhook["address"], webhook["api_version"]) == (
        "customers/create",
        ADDRESS,
        VERSION,
    )
    assert call(origin, "GET", "webhooks.json").json()["webhooks"] == [webhook]
    assert call(origin, "GET", "webhooks/count.json").json() == {"count": 1}

    moved = "https://moved.example.com/webhooks/shopline"
    updated = call(origin, "PUT", f"{webhook['id']}/webhooks.json", body={"webhook": {"address": moved}})
    assert updated.status_code == 200
    assert updated.json()["webhook"]["address"] == moved
    assert updated.json()["webhook"]["topic"] == "customers/create"

    assert call(origin, "DELETE", f"{webhook['id']}/webhooks.json").status_code == 200
    assert call(origin, "GET", "webhooks.json").json() == {"webhooks": []}
    assert call(origin, "DELETE", f"{webhook['id']}/webhooks.json").status_code == 404


@pytest.mark.nodb
@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({"topic": "orders/create", "address": ADDRESS, "api_version": VERSION}, "topic"),
        ({"topic": "customers/create", "address": "ftp://x.example.com", "api_version": VERSION}, "address"),
        ({"topic": "customers/create", "address": "https://x.example.com/" + "a" * 260}, "address"),
        ({"topic": "customers/create", "address": ADDRESS, "api_version": "v20230901"}, "api_version"),
        ({"topic": "customers/create", "address": ADDRESS}, "api_version"),
    ],
)
def test_devstore_refuses_bad_subscriptions(origin: str, webhook: dict[str, Any], message: str) -> None:
    response = call(origin, "POST", "webhooks.json", body={"webhook": webhook})
    assert response.status_code == 422
    assert message in response.json()["errors"]


@pytest.mark.nodb
def test_devstore_refuses_the_same_subscription_twice(origin: str) -> None:
    body = {"webhook": {"topic": "customers/update", "address": ADDRESS, "api_version": VERSION}}
    assert call(origin, "POST", "webhooks.json", body=body).status_code == 200
    again = call(origin, "POST", "webhooks.json", body=body)
    assert again.status_code == 422
    assert "already been taken" in again.json()["errors"]


@pytest.mark.nodb
def test_devstore_subscriptions_belong_to_their_shop(origin: str) -> None:
    body = {"webhook": {"topic": "customers/update", "address": ADDRESS, "api_version": VERSION}}
    webhook_id = call(origin, "POST", "webhooks.json", body=body).json()["webhook"]["id"]
    other = {"token": OTHER_TOKEN, "domain": OTHER}
    assert call(origin, "GET", "webhooks.json", **other).json() == {"webhooks": []}
    assert call(origin, "DELETE", f"{webhook_id}/webhooks.json", **other).status_code == 404
    moved = {"webhook": {"address": "https://x.example.com/h"}}
    assert call(origin, "PUT", f"{webhook_id}/webhooks.json", body=moved, **other).status_code == 404
    # A token used for another shop, or none at all, is refused like on the customer endpoints.
    assert call(origin, "GET", "webhooks.json", token=TOKEN, domain=OTHER).status_code == 401
    assert call(origin, "GET", "webhooks.json", token="nope").status_code == 401


# -- ensure_subscriptions ---------------------------------------------------------------------------------


@pytest.mark.nodb
def test_ensure_creates_every_topic_once(origin: str, store: DevStore) -> None:
    api = webhook_api(origin)
    first = ensure_subscriptions(api, TOPICS, ADDRESS)
    assert [sub.topic for sub in first.created] == list(TOPICS)
    assert first.updated == []
    assert first.failed == {}
    listed = shopline_api.list_subscriptions(store, DOMAIN)
    assert sorted(sub["topic"] for sub in listed) == sorted(TOPICS)
    assert {sub["address"] for sub in listed} == {ADDRESS}
    assert {sub["api_version"] for sub in listed} == {VERSION}

    again = ensure_subscriptions(api, TOPICS, ADDRESS)
    assert not again.changed
    assert again.failed == {}
    assert len(shopline_api.list_subscriptions(store, DOMAIN)) == len(TOPICS)
    assert shopline_api.list_subscriptions(store, OTHER) == []


@pytest.mark.nodb
def test_ensure_recreates_what_shopline_deleted(origin: str, store: DevStore) -> None:
    api = webhook_api(origin)
    ensure_subscriptions(api, TOPICS, ADDRESS)
    # SHOPLINE deletes a subscription after 19 failed deliveries (§2.4).
    assert shopline_api.drop_subscription(store, DOMAIN, "customers/update") == 1
    changes = ensure_subscriptions(api, TOPICS, ADDRESS)
    assert [sub.topic for sub in changes.created] == ["customers/update"]
    assert sorted(sub["topic"] for sub in shopline_api.list_subscriptions(store, DOMAIN)) == sorted(TOPICS)


@pytest.mark.nodb
def test_ensure_points_a_stale_address_back_at_the_app(origin: str, store: DevStore) -> None:
    api = webhook_api(origin)
    old = "https://old-popsync.example.com/webhooks/shopline"
    stale = api.create("customers/delete", old)
    changes = ensure_subscriptions(api, TOPICS, ADDRESS)
    assert [sub.id for sub in changes.updated] == [stale.id]
    assert "customers/delete" not in [sub.topic for sub in changes.created]
    listed = shopline_api.list_subscriptions(store, DOMAIN)
    assert len(listed) == len(TOPICS)
    assert {sub["address"] for sub in listed} == {ADDRESS}


@pytest.mark.nodb
def test_ensure_goes_on_past_a_refused_topic(origin: str, store: DevStore) -> None:
    changes = ensure_subscriptions(webhook_api(origin), ("customers/create", "no/such_topic"), ADDRESS)
    assert [sub.topic for sub in changes.created] == ["customers/create"]
    assert list(changes.failed) == ["no/such_topic"]
    assert "422" in changes.failed["no/such_topic"]


@pytest.mark.nodb
def test_a_refused_token_is_auth_failed_and_never_shown(origin: str) -> None:
    with pytest.raises(AuthFailed) as raised:
        ensure_subscriptions(webhook_api(origin, token="revoked-token-value"), TOPICS, ADDRESS)
    assert "revoked-token-value" not in str(raised.value)


@pytest.mark.nodb
@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_outages_are_retry_later(status: int) -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(f"https://{DOMAIN}/admin/openapi/{VERSION}/webhooks.json", status=status, json={})
        api = ShoplineWebhookApi(domain=DOMAIN, access_token=TOKEN, api_version=VERSION, admin_origin=None)
        with pytest.raises(RetryLater):
            ensure_subscriptions(api, TOPICS, ADDRESS)
        assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.nodb
def test_webhook_address_is_under_app_url() -> None:
    assert webhook_address("https://popsync.example.com") == ADDRESS
    assert webhook_address("https://popsync.example.com/") == ADDRESS


# -- the daily check for one shop ----------------------------------------------------------------------


@pytest.fixture
def shopline_app(engine: sa.Engine, connection: sa.Connection, origin: str) -> Flask:
    """An app in the test's transaction with SHOPLINE settings pointing at the development store."""
    config = app_config(
        engine.url.render_as_string(hide_password=False),
        DATABASE_ENGINE=engine,
        SHOPLINE_APP_KEY="key",
        SHOPLINE_APP_SECRET=SECRET,
        SHOPLINE_ADMIN_ORIGIN=origin,
    )
    application = create_app(config)
    get_database(application).bind_to(connection)
    return application


def _shop(app: Flask, domain: str, token: str, expires_at: datetime | None = None) -> Shop:
    with get_database(app).write_transaction() as session:
        return register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform="shopline",
            domain=domain,
            token=token,
            expires_at=expires_at,
        )


def test_check_shop_subscribes_an_installed_shop_once(shopline_app: Flask, store: DevStore) -> None:
    shop = _shop(shopline_app, DOMAIN, TOKEN)
    db = get_database(shopline_app)
    settings = shopline_app.config["POPSYNC"]
    keyring = shopline_app.extensions["popsync.keyring"]
    changes = check_shop(db, settings, keyring, shop.id)
    assert changes is not None
    assert len(changes.created) == len(TOPICS)
    listed = shopline_api.list_subscriptions(store, DOMAIN)
    assert {sub["address"] for sub in listed} == {"http://popsync.test/webhooks/shopline"}
    again = check_shop(db, settings, keyring, shop.id)
    assert again is not None
    assert not again.changed


def test_check_shop_skips_uninstalled_and_unknown_shops(shopline_app: Flask, store: DevStore) -> None:
    shop = _shop(shopline_app, DOMAIN, TOKEN)
    db = get_database(shopline_app)
    with db.write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = shop.installed_at  # type: ignore[union-attr]
    settings = shopline_app.config["POPSYNC"]
    keyring = shopline_app.extensions["popsync.keyring"]
    with responses.RequestsMock() as mocked:
        assert check_shop(db, settings, keyring, shop.id) is None
        assert check_shop(db, settings, keyring, shop.id + 1000) is None
        assert len(mocked.calls) == 0


def test_check_shop_refreshes_a_token_about_to_expire_first(shopline_app: Flask, store: DevStore) -> None:
    shop = _shop(shopline_app, DOMAIN, TOKEN, expires_at=utcnow() + timedelta(minutes=10))
    db = get_database(shopline_app)
    keyring = shopline_app.extensions["popsync.keyring"]
    changes = check_shop(db, shopline_app.config["POPSYNC"], keyring, shop.id)
    assert changes is not None
    assert len(changes.created) == len(TOPICS)
    with db.sessionmaker() as session:
        refreshed = session.get(Shop, shop.id)
        assert refreshed is not None
        new_token = access_token(refreshed, keyring)
    assert new_token != TOKEN
    assert store.shop_for_token("shopline", new_token or "", DOMAIN) is not None
