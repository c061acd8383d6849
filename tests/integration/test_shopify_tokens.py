"""Shopify's expiring offline tokens: refresh under the shop's lock (single-use refresh tokens, a lost
answer retried once), and the whole path install → token → refresh against the development store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests
import responses
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from app.config import Settings
from app.db import get_database
from app.db import utcnow
from app.models import Shop
from app.platforms.base import AuthFailed
from app.platforms.base import RetryLater
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.platforms.devstore import shopify_oauth
from app.platforms.tokens import refresh_if_due
from app.platforms.tokens import request_shopify_token
from app.shops import TOKEN_PURPOSE
from app.shops import access_token
from app.shops import register_shop
from tests.functional.test_shopify_install import callback_params
from tests.functional.test_shopify_install import shopify_app
from tests.functional.test_shopify_install import start_install
from tests.unit.test_session_tokens import API_KEY
from tests.unit.test_session_tokens import SECRET
from tests.unit.test_session_tokens import make_session_token

TOKEN_URL = "https://demo.myshopify.com/admin/oauth/access_token"
NOW = datetime(2026, 10, 1, 12, 0, tzinfo=utcnow().tzinfo)


@pytest.fixture
def app(engine: sa.Engine, connection: sa.Connection) -> Flask:
    return shopify_app(engine, connection, SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET)


def settings_of(app: Flask) -> Settings:
    return app.config["POPSYNC"]


def expiring_shop(app: Flask, *, expires_in: timedelta, refresh_token: str | None = "shprt_old") -> Shop:  # noqa: S107
    with get_database(app).write_transaction() as session:
        shop = register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform="shopify",
            domain="demo.myshopify.com",
            token="shpat_old",
            refresh_token=refresh_token,
            expires_at=NOW + expires_in,
        )
        shop.refresh_token_expires_at = NOW + timedelta(days=80) if refresh_token else None
        return shop


def reload(app: Flask, shop_id: int) -> Shop:
    with get_database(app).sessionmaker() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        return shop


def refresh(app: Flask, shop_id: int, **kwargs: object) -> bool:
    return refresh_if_due(
        get_database(app),
        app.extensions["popsync.keyring"],
        settings_of(app),
        shop_id,
        clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    )


def refresh_token_of(app: Flask, shop: Shop) -> str:
    assert shop.refresh_token is not None
    return app.extensions["popsync.keyring"].open_text(TOKEN_PURPOSE, shop.refresh_token)


GRANTED = {
    "access_token": "shpat_new",
    "scope": "read_customers,write_customers",
    "expires_in": 3600,
    "refresh_token": "shprt_new",
    "refresh_token_expires_in": 7776000,
}


# --- refresh_if_due for Shopify, against a mocked Shopify -----------------------------------------------


def test_a_token_about_to_expire_is_refreshed_with_its_refresh_token(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2))
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json=GRANTED)
        assert refresh(app, shop.id) is True
        sent = parse_qs(mock.calls[0].request.body)
    assert sent == {
        "client_id": [API_KEY],
        "client_secret": [SECRET],
        "grant_type": ["refresh_token"],
        "refresh_token": ["shprt_old"],
    }
    stored = reload(app, shop.id)
    assert access_token(stored, app.extensions["popsync.keyring"]) == "shpat_new"
    assert refresh_token_of(app, stored) == "shprt_new"
    assert stored.access_token_expires_at == NOW + timedelta(hours=1)
    assert stored.refresh_token_expires_at == NOW + timedelta(days=90)
    assert stored.scopes == "read_customers,write_customers"


def test_a_token_with_time_left_is_not_refreshed(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=30))
    with responses.RequestsMock() as mock:
        assert refresh(app, shop.id) is False
        assert len(mock.calls) == 0


def test_a_refused_token_is_refreshed_even_with_time_left(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=30))
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json=GRANTED)
        assert refresh(app, shop.id, refused_token=shop.access_token) is True
    assert access_token(reload(app, shop.id), app.extensions["popsync.keyring"]) == "shpat_new"


def test_a_token_another_worker_already_refreshed_is_not_refreshed_again(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2))
    with responses.RequestsMock() as mock:
        assert refresh(app, shop.id, refused_token="the-token-before") is True
        assert len(mock.calls) == 0


def test_a_lost_answer_is_retried_at_once_with_the_same_refresh_token(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2))
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, body=requests.ConnectionError("connection reset"))
        mock.post(TOKEN_URL, json=GRANTED)
        assert refresh(app, shop.id) is True
        tokens = [parse_qs(call.request.body)["refresh_token"] for call in mock.calls]
    assert tokens == [["shprt_old"], ["shprt_old"]]
    assert refresh_token_of(app, reload(app, shop.id)) == "shprt_new"


def test_a_refresh_lost_twice_is_retried_later_and_changes_nothing(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2))
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, body=requests.Timeout("read timed out"))
        mock.post(TOKEN_URL, body=requests.Timeout("read timed out"))
        with pytest.raises(RetryLater):
            refresh(app, shop.id)
        assert len(mock.calls) == 2
    stored = reload(app, shop.id)
    assert access_token(stored, app.extensions["popsync.keyring"]) == "shpat_old"
    assert refresh_token_of(app, stored) == "shprt_old"


@pytest.mark.parametrize(("status", "error"), [(429, RetryLater), (503, RetryLater), (400, AuthFailed)])
def test_refresh_failures(app: Flask, status: int, error: type[Exception]) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2))
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, status=status, json={"error": "invalid_grant"})
        with pytest.raises(error) as raised:
            refresh(app, shop.id)
        assert len(mock.calls) == 1
    assert "shprt_old" not in str(raised.value)
    assert SECRET not in str(raised.value)
    assert access_token(reload(app, shop.id), app.extensions["popsync.keyring"]) == "shpat_old"


def test_a_token_without_refresh_token(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2), refresh_token=None)
    with responses.RequestsMock() as mock:
        assert refresh(app, shop.id) is False
        with pytest.raises(AuthFailed, match="no refresh token"):
            refresh(app, shop.id, refused_token=shop.access_token)
        assert len(mock.calls) == 0


def test_an_expired_refresh_token_is_not_used(app: Flask) -> None:
    shop = expiring_shop(app, expires_in=timedelta(minutes=2))
    with get_database(app).write_transaction() as session:
        session.get(Shop, shop.id).refresh_token_expires_at = NOW - timedelta(seconds=1)  # type: ignore[union-attr]
    with responses.RequestsMock() as mock:
        assert refresh(app, shop.id) is False
        with pytest.raises(AuthFailed, match="expired"):
            refresh(app, shop.id, refused_token=shop.access_token)
        assert len(mock.calls) == 0


# --- against the development store ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def running_store(store: DevStore) -> Iterator[str]:
    """The development store with its OAuth endpoint, on a real port in a thread."""
    wsgi = create_devstore(store)
    if "devstore_shopify_oauth" not in wsgi.blueprints:
        wsgi.register_blueprint(shopify_oauth.bp)
    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="devstore", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> DevStore:
    return DevStore(webhook_secrets={"shopify": SECRET}, clock=clock)


@pytest.fixture
def origin(store: DevStore) -> Iterator[str]:
    with running_store(store) as origin:
        yield origin


@pytest.fixture
def live_app(engine: sa.Engine, connection: sa.Connection, origin: str) -> Flask:
    return shopify_app(
        engine, connection, SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, SHOPIFY_ADMIN_ORIGIN=origin
    )


def shop_by_domain(app: Flask, domain: str) -> Shop:
    with get_database(app).sessionmaker() as session:
        shop = session.scalar(sa.select(Shop).where(Shop.domain == domain))
        assert shop is not None
        return shop


def works(store: DevStore, token: str, domain: str) -> bool:
    return store.shop_for_token("shopify", token, domain) is not None


def test_install_then_refresh_against_the_development_store(
    live_app: Flask, store: DevStore, clock: Clock
) -> None:
    app = live_app
    keyring = app.extensions["popsync.keyring"]
    client = app.test_client()
    domain = "new-shop.myshopify.com"

    # Install: grant page (the browser would go to Shopify), callback, token from the store.
    state = start_install(client, domain)
    response = client.get("/auth/shopify/callback", query_string=callback_params(state, shop=domain))
    assert response.status_code == 302
    assert urlsplit(response.location).netloc == domain
    shop = shop_by_domain(app, domain)
    first_access = access_token(shop, keyring)
    first_refresh = refresh_token_of(app, shop)
    assert first_access
    assert works(store, first_access, domain)
    assert shop.access_token_expires_at is not None

    # Refresh when it is about to expire: new pair, the old access token stops working.
    about_to_expire = shop.access_token_expires_at - timedelta(minutes=1)
    assert refresh_if_due(
        get_database(app), keyring, settings_of(app), shop.id, clock=lambda: about_to_expire
    )
    shop = shop_by_domain(app, domain)
    second_access, second_refresh = access_token(shop, keyring), refresh_token_of(app, shop)
    assert second_access != first_access
    assert second_refresh != first_refresh
    assert works(store, second_access, domain)
    assert not works(store, first_access, domain)

    # The spent refresh token, retried at once (as after a lost answer), gets the same new pair …
    retried = request_shopify_token(
        domain, {"grant_type": "refresh_token", "refresh_token": first_refresh}, settings_of(app)
    )
    assert (retried.access_token, retried.refresh_token) == (second_access, second_refresh)
    # … and nothing once the retry window has passed.
    clock.now += shopify_oauth.REFRESH_RETRY_WINDOW + 1
    with pytest.raises(AuthFailed, match="invalid_grant"):
        request_shopify_token(
            domain, {"grant_type": "refresh_token", "refresh_token": first_refresh}, settings_of(app)
        )

    # A token the store refused is refreshed again with the newer refresh token.
    assert refresh_if_due(
        get_database(app), keyring, settings_of(app), shop.id, refused_token=shop.access_token
    )
    shop = shop_by_domain(app, domain)
    third_access = access_token(shop, keyring) or ""
    assert works(store, third_access, domain)
    assert not works(store, second_access, domain)
    # The refresh token it replaced is spent too, once its retry window has passed.
    clock.now += shopify_oauth.REFRESH_RETRY_WINDOW + 1
    with pytest.raises(AuthFailed, match="invalid_grant"):
        request_shopify_token(
            domain, {"grant_type": "refresh_token", "refresh_token": second_refresh}, settings_of(app)
        )
    assert works(store, third_access, domain)


def test_app_home_token_exchange_against_the_development_store(live_app: Flask, store: DevStore) -> None:
    domain = "embedded-shop.myshopify.com"
    response = live_app.test_client().get(
        "/", query_string={"shop": domain, "id_token": make_session_token(domain)}
    )
    assert response.status_code == 200
    shop = shop_by_domain(live_app, domain)
    token = access_token(shop, live_app.extensions["popsync.keyring"])
    assert token
    assert works(store, token, domain)
    assert shop.refresh_token is not None
    assert shop.access_token_expires_at is not None


def post_token(origin: str, domain: str, **fields: str) -> requests.Response:
    return requests.post(
        f"{origin}/admin/oauth/access_token",
        data={"client_id": API_KEY, "client_secret": SECRET, **fields},
        headers={"X-Forwarded-Host": domain},
        timeout=10,
    )


def test_the_store_refuses_bad_grants(origin: str, store: DevStore) -> None:
    domain = "demo.myshopify.com"
    wrong_secret = requests.post(
        f"{origin}/admin/oauth/access_token",
        data={"client_id": API_KEY, "client_secret": "not-the-secret", "code": "c"},
        headers={"X-Forwarded-Host": domain},
        timeout=10,
    )
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert post_token(origin, "evil.com", code="c").status_code == 400
    assert post_token(origin, domain).json()["error"] == "invalid_request"  # no code
    assert post_token(origin, domain, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert post_token(origin, domain, grant_type="refresh_token", refresh_token="shprt_x").json()[
        "error"
    ] == ("invalid_grant")
    exchange = {
        "grant_type": shopify_oauth.TOKEN_EXCHANGE,
        "subject_token_type": shopify_oauth.ID_TOKEN_TYPE,
        "requested_token_type": shopify_oauth.OFFLINE_TOKEN_TYPE,
        "expiring": "1",
    }
    forged = make_session_token(domain, secret="shpss_someone_elses_secret_0123456789ab")
    assert (
        post_token(origin, domain, subject_token=forged, **exchange).json()["error"]
        == "invalid_subject_token"
    )
    other_shop = make_session_token("other.myshopify.com")
    assert post_token(origin, domain, subject_token=other_shop, **exchange).json()["error"] == (
        "invalid_subject_token"
    )
    valid = post_token(origin, domain, subject_token=make_session_token(domain), **exchange).json()
    assert valid["expires_in"] == 3600
    assert valid["refresh_token_expires_in"] == 7776000
    assert works(store, valid["access_token"], domain)


def test_a_non_expiring_code_grant(origin: str, store: DevStore) -> None:
    answer = post_token(origin, "demo.myshopify.com", code="c").json()
    assert set(answer) == {"access_token", "scope"}
    assert works(store, answer["access_token"], "demo.myshopify.com")
