"""Shopify install and authentication over HTTP: the query hmac, the authorization-code install, the
embedded app home with token exchange, and session tokens on the admin API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import httpx
import pytest
import responses
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict

from app import create_app
from app.auth import shopify as shopify_auth
from app.auth.shopify import STATE_COOKIE
from app.auth.shopify import STATE_SALT
from app.auth.shopify import QueryError
from app.auth.shopify import query_hmac
from app.auth.shopify import verify_query
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import get_database
from app.enums import Source
from app.models import Shop
from app.shops import access_token
from tests.conftest import add_api_key
from tests.conftest import add_shop
from tests.conftest import app_config
from tests.unit.test_session_tokens import API_KEY
from tests.unit.test_session_tokens import SECRET
from tests.unit.test_session_tokens import make_session_token

TOKEN_URL = "https://demo.myshopify.com/admin/oauth/access_token"
EVIL_SHOPS = [
    "evil.com",
    "x.myshopify.com.evil.com",
    "x.myshopify.com@evil.com",
    "https://x.myshopify.com/../",
    "https://x.myshopify.com",
    "x.myshopify.com/admin",
    "",
]


def shopify_app(engine: sa.Engine, connection: sa.Connection, **extra: Any) -> Flask:
    config = app_config(engine.url.render_as_string(hide_password=False), DATABASE_ENGINE=engine, **extra)
    application = create_app(config)
    application.config["TESTING"] = True
    get_database(application).bind_to(connection)
    if "shopify_auth" not in application.blueprints:
        application.register_blueprint(shopify_auth.bp)
    return application


@pytest.fixture
def app(engine: sa.Engine, connection: sa.Connection) -> Flask:
    return shopify_app(engine, connection, SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET)


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(shopify_auth, "requeue_failed", lambda db, shop_id: calls.append(shop_id) or 0)
    return calls


@pytest.fixture
def no_outbound() -> Iterator[responses.RequestsMock]:
    """Every requests call is recorded (and refused): a test asserts none was made."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def signed(params: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    return {**params, "hmac": query_hmac(params, secret)}


def shop_row(app: Flask, domain: str) -> Shop | None:
    with get_database(app).sessionmaker() as session:
        return session.scalar(sa.select(Shop).where(Shop.domain == domain))


# --- the query hmac -------------------------------------------------------------------------------------

PUBLISHED = {
    "code": "0907a61c0c8d55e99db179b68161bc00",
    "shop": "some-shop.myshopify.com",
    "state": "0.6784241404160823",
    "timestamp": "1337178173",
}


@pytest.mark.nodb
def test_shopifys_published_hmac_example() -> None:
    assert query_hmac(PUBLISHED, "hush") == "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
    without_state = {k: v for k, v in PUBLISHED.items() if k != "state"}
    assert (
        query_hmac(without_state, "hush")
        == "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"
    )


@pytest.mark.nodb
def test_verify_query_accepts_the_published_example_when_fresh() -> None:
    args = MultiDict(signed(PUBLISHED, "hush"))
    verify_query(args, ["hush"], now=1337178173 + 30)
    verify_query(args, ["the-new-secret", "hush"], now=1337178173)  # the previous secret, while rotating


@pytest.mark.nodb
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shop": "other-shop.myshopify.com"}, "does not verify"),
        ({"hmac": "0" * 64}, "does not verify"),
        ({"hmac": ""}, "missing"),
        ({"extra": "1"}, "does not verify"),
    ],
)
def test_verify_query_refuses_forgeries(change: dict[str, str], message: str) -> None:
    args = MultiDict({**signed(PUBLISHED, "hush"), **change})
    with pytest.raises(QueryError, match=message):
        verify_query(args, ["hush"], now=1337178173)


@pytest.mark.nodb
def test_verify_query_refuses_an_expired_or_replayed_link() -> None:
    args = MultiDict(signed(PUBLISHED, "hush"))
    with pytest.raises(QueryError, match="expired"):
        verify_query(args, ["hush"], now=1337178173 + 91)
    with pytest.raises(QueryError, match="expired"):
        verify_query(args, ["hush"], now=time.time())


@pytest.mark.nodb
def test_verify_query_refuses_repeated_parameters() -> None:
    args = MultiDict([*signed(PUBLISHED, "hush").items(), ("shop", "evil.myshopify.com")])
    with pytest.raises(QueryError, match="repeated"):
        verify_query(args, ["hush"], now=1337178173)


# --- GET /auth/shopify ----------------------------------------------------------------------------------


def start_install(client: FlaskClient, shop: str = "demo.myshopify.com") -> str:
    response = client.get("/auth/shopify", query_string={"shop": shop})
    assert response.status_code == 302
    return parse_qs(urlsplit(response.location).query)["state"][0]


def test_install_redirects_to_the_grant_page_with_a_state_cookie(client: FlaskClient) -> None:
    response = client.get("/auth/shopify?shop=demo.myshopify.com")
    assert response.status_code == 302
    target = urlsplit(response.location)
    assert (target.scheme, target.netloc, target.path) == (
        "https",
        "demo.myshopify.com",
        "/admin/oauth/authorize",
    )
    query = parse_qs(target.query)
    assert query["client_id"] == [API_KEY]
    assert query["scope"] == ["read_customers,write_customers,write_app_proxy,read_themes"]
    assert query["redirect_uri"] == ["http://popsync.test/auth/shopify/callback"]
    assert len(query["state"][0]) >= 32
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{STATE_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/auth/shopify", "Max-Age=600"):
        assert attribute in cookie
    assert query["state"][0] not in cookie  # the nonce travels signed, never readable as such
    assert SECRET not in response.location


def test_install_with_a_valid_hmac(client: FlaskClient) -> None:
    params = signed({"shop": "demo.myshopify.com", "timestamp": str(int(time.time())), "host": "YWRtaW4"})
    assert client.get("/auth/shopify", query_string=params).status_code == 302


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: {**p, "hmac": "f" * 64},
        lambda p: {**p, "host": "ZXZpbA"},
        lambda p: signed({"shop": p["shop"], "timestamp": str(int(time.time()) - 3600)}),
        lambda p: signed(
            {"shop": p["shop"], "timestamp": p["timestamp"]}, "shpss_not_our_secret_0123456789abcdef"
        ),
    ],
)
def test_install_with_a_bad_hmac_is_refused(
    client: FlaskClient, no_outbound: responses.RequestsMock, tamper
) -> None:  # type: ignore[no-untyped-def]
    params = signed({"shop": "demo.myshopify.com", "timestamp": str(int(time.time())), "host": "YWRtaW4"})
    response = client.get("/auth/shopify", query_string=tamper(params))
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert len(no_outbound.calls) == 0


@pytest.mark.parametrize("shop", EVIL_SHOPS)
def test_install_refuses_anything_but_a_shop_domain(
    client: FlaskClient, no_outbound: responses.RequestsMock, shop: str
) -> None:
    response = client.get("/auth/shopify", query_string={"shop": shop})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert len(no_outbound.calls) == 0


def test_without_shopify_configured_the_routes_answer_503(
    engine: sa.Engine, connection: sa.Connection
) -> None:
    client = shopify_app(engine, connection).test_client()
    for path in (
        "/auth/shopify?shop=demo.myshopify.com",
        "/auth/shopify/callback?shop=demo.myshopify.com",
        "/?shop=demo.myshopify.com",
        "/auth/patch-id-token?shop=demo.myshopify.com&shopify-reload=%2F",
    ):
        response = client.get(path)
        assert response.status_code == 503, path
        assert b"SHOPIFY_API_KEY" in response.data


# --- GET /auth/shopify/callback -------------------------------------------------------------------------


def callback_params(state: str, shop: str = "demo.myshopify.com", code: str = "the-code") -> dict[str, str]:
    return signed(
        {"code": code, "shop": shop, "state": state, "timestamp": str(int(time.time())), "host": "YWRtaW4"}
    )


def test_callback_stores_the_tokens_and_opens_the_app(
    app: Flask, client: FlaskClient, requeued: list[int]
) -> None:
    state = start_install(client)
    with responses.RequestsMock() as mock:
        mock.post(
            TOKEN_URL,
            json={
                "access_token": "shpat_granted",
                "scope": "read_customers,write_customers,write_app_proxy",
                "expires_in": 3600,
                "refresh_token": "shprt_granted",
                "refresh_token_expires_in": 7776000,
            },
        )
        response = client.get("/auth/shopify/callback", query_string=callback_params(state))
        sent = parse_qs(mock.calls[0].request.body)
    assert response.status_code == 302
    assert response.location == f"https://demo.myshopify.com/admin/apps/{API_KEY}"
    assert sent == {
        "client_id": [API_KEY],
        "client_secret": [SECRET],
        "code": ["the-code"],
        "expiring": ["1"],
    }
    shop = shop_row(app, "demo.myshopify.com")
    assert shop is not None
    assert shop.platform == "shopify"
    assert "shpat_granted" not in (shop.access_token or "")  # sealed at rest
    assert access_token(shop, app.extensions["popsync.keyring"]) == "shpat_granted"
    assert shop.refresh_token is not None
    assert "shprt_granted" not in shop.refresh_token
    assert shop.access_token_expires_at is not None
    assert shop.refresh_token_expires_at is not None
    assert 3500 < (shop.access_token_expires_at - shop.installed_at).total_seconds() < 3700
    assert shop.scopes == "read_customers,write_customers,write_app_proxy"
    assert requeued == [shop.id]
    assert f"{STATE_COOKIE}=;" in response.headers["Set-Cookie"]  # the state is spent


def test_a_replayed_callback_is_refused_without_a_token_request(
    client: FlaskClient, requeued: list[int]
) -> None:
    state = start_install(client)
    params = callback_params(state)
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json={"access_token": "shpat_granted", "scope": ""})
        assert client.get("/auth/shopify/callback", query_string=params).status_code == 302
        assert client.get("/auth/shopify/callback", query_string=params).status_code == 403
        assert len(mock.calls) == 1


def test_state_mismatch_is_refused_without_a_token_request(
    client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    start_install(client)
    response = client.get("/auth/shopify/callback", query_string=callback_params("not-the-state"))
    assert response.status_code == 403
    assert len(no_outbound.calls) == 0


def test_state_for_another_shop_is_refused(client: FlaskClient, no_outbound: responses.RequestsMock) -> None:
    state = start_install(client, "other.myshopify.com")
    response = client.get("/auth/shopify/callback", query_string=callback_params(state))
    assert response.status_code == 403
    assert len(no_outbound.calls) == 0


def test_callback_without_a_state_cookie_is_refused(app: Flask, no_outbound: responses.RequestsMock) -> None:
    state = start_install(app.test_client())
    other_browser = app.test_client()
    response = other_browser.get("/auth/shopify/callback", query_string=callback_params(state))
    assert response.status_code == 403
    assert len(no_outbound.calls) == 0


class StaleSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 601


def test_an_expired_state_cookie_is_refused(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    stale = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=STATE_SALT, signer=StaleSigner)
    client.set_cookie(
        STATE_COOKIE, stale.dumps({"state": "s1", "shop": "demo.myshopify.com"}), path="/auth/shopify"
    )
    response = client.get("/auth/shopify/callback", query_string=callback_params("s1"))
    assert response.status_code == 403
    assert b"too long" in response.data
    assert len(no_outbound.calls) == 0


def test_a_forged_state_cookie_is_refused(client: FlaskClient, no_outbound: responses.RequestsMock) -> None:
    forged = URLSafeTimedSerializer("another-secret-key-0123456789", salt=STATE_SALT)
    client.set_cookie(
        STATE_COOKIE, forged.dumps({"state": "s1", "shop": "demo.myshopify.com"}), path="/auth/shopify"
    )
    assert client.get("/auth/shopify/callback", query_string=callback_params("s1")).status_code == 403
    assert len(no_outbound.calls) == 0


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: {k: v for k, v in p.items() if k != "hmac"},
        lambda p: {**p, "code": "another-code"},
        lambda p: {**p, "hmac": p["hmac"].upper()},
    ],
)
def test_callback_with_a_bad_hmac_is_refused_without_a_token_request(
    client: FlaskClient,
    no_outbound: responses.RequestsMock,
    tamper,  # type: ignore[no-untyped-def]
) -> None:
    state = start_install(client)
    response = client.get("/auth/shopify/callback", query_string=tamper(callback_params(state)))
    assert response.status_code == 401
    assert len(no_outbound.calls) == 0


@pytest.mark.parametrize("shop", EVIL_SHOPS)
def test_callback_refuses_anything_but_a_shop_domain(
    client: FlaskClient, no_outbound: responses.RequestsMock, shop: str
) -> None:
    state = start_install(client)
    response = client.get("/auth/shopify/callback", query_string=callback_params(state, shop=shop))
    assert response.status_code == 400
    assert len(no_outbound.calls) == 0


def test_callback_when_shopify_refuses_the_code(app: Flask, client: FlaskClient, requeued: list[int]) -> None:
    state = start_install(client)
    with responses.RequestsMock() as mock:
        mock.post(
            TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": "code was used"}
        )
        response = client.get("/auth/shopify/callback", query_string=callback_params(state))
    assert response.status_code == 502
    assert b"start the install again" in response.data
    assert shop_row(app, "demo.myshopify.com") is None
    assert requeued == []


def test_callback_goes_to_the_admin_origin_when_set(
    engine: sa.Engine, connection: sa.Connection, requeued: list[int]
) -> None:
    app = shopify_app(
        engine,
        connection,
        SHOPIFY_API_KEY=API_KEY,
        SHOPIFY_API_SECRET=SECRET,
        SHOPIFY_ADMIN_ORIGIN="http://devstore.test:9000",
    )
    client = app.test_client()
    state = start_install(client)
    with responses.RequestsMock() as mock:
        mock.post(
            "http://devstore.test:9000/admin/oauth/access_token",
            json={"access_token": "shpat_x", "scope": ""},
        )
        response = client.get("/auth/shopify/callback", query_string=callback_params(state))
        assert mock.calls[0].request.headers["X-Forwarded-Host"] == "demo.myshopify.com"
    # The merchant's browser still goes to the real admin.
    assert response.location == f"https://demo.myshopify.com/admin/apps/{API_KEY}"


# --- GET / and /auth/patch-id-token ---------------------------------------------------------------------


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Token exchanges as the shopifyapp client sends them, answered like Shopify does."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        if body["subject_token"] == "refuse":
            return httpx.Response(400, json={"error": "invalid_subject_token"})
        return httpx.Response(
            200,
            json={
                "access_token": "shpat_exchanged",
                "scope": "read_customers,write_customers",
                "expires_in": 3600,
                "refresh_token": "shprt_exchanged",
                "refresh_token_expires_in": 7776000,
            },
        )

    monkeypatch.setattr(
        shopify_auth,
        "shopify_http_client",
        lambda settings: httpx.Client(transport=httpx.MockTransport(handler)),
    )
    return seen


def test_app_home_outside_shopify_is_a_short_note(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b"Shopify admin" in response.data


def test_app_home_without_id_token_bounces_to_the_patch_page(client: FlaskClient) -> None:
    response = client.get("/?shop=demo.myshopify.com&host=YWRtaW4&embedded=1")
    assert response.status_code == 302
    target = urlsplit(response.location)
    assert target.path == "/auth/patch-id-token"
    query = parse_qs(target.query)
    assert query["shop"] == ["demo.myshopify.com"]
    assert query["shopify-reload"] == ["/?shop=demo.myshopify.com&host=YWRtaW4&embedded=1"]


def test_app_home_for_an_installed_shop(
    client: FlaskClient, shop: Shop, exchanges: list[httpx.Request]
) -> None:
    token = make_session_token()
    response = client.get(
        "/", query_string={"shop": "demo.myshopify.com", "id_token": token, "embedded": "1"}
    )
    assert response.status_code == 200
    assert b"popsync is installed on demo.myshopify.com" in response.data
    assert f'content="{API_KEY}"'.encode() in response.data
    assert b"cdn.shopify.com/shopifycloud/app-bridge.js" in response.data
    assert response.headers["Content-Security-Policy"].endswith(
        "frame-ancestors https://demo.myshopify.com https://admin.shopify.com"
    )
    assert exchanges == []  # the shop has a token: no exchange


def test_app_home_exchanges_the_id_token_for_a_new_shop(
    app: Flask, client: FlaskClient, exchanges: list[httpx.Request], requeued: list[int]
) -> None:
    token = make_session_token("fresh.myshopify.com")
    response = client.get("/", query_string={"shop": "fresh.myshopify.com", "id_token": token})
    assert response.status_code == 200
    assert [str(r.url) for r in exchanges] == ["https://fresh.myshopify.com/admin/oauth/access_token"]
    body = json.loads(exchanges[0].content)
    assert body["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert body["subject_token"] == token
    assert body["requested_token_type"] == "urn:shopify:params:oauth:token-type:offline-access-token"
    assert body["expiring"] == 1
    shop = shop_row(app, "fresh.myshopify.com")
    assert shop is not None
    assert access_token(shop, app.extensions["popsync.keyring"]) == "shpat_exchanged"
    assert shop.refresh_token is not None
    assert shop.refresh_token_expires_at is not None
    assert shop.access_token_expires_at is not None
    assert requeued == [shop.id]


def test_app_home_exchanges_again_for_a_shop_that_needs_reauthorisation(
    app: Flask, client: FlaskClient, shop: Shop, exchanges: list[httpx.Request], requeued: list[int]
) -> None:
    with get_database(app).write_transaction() as session:
        session.get(Shop, shop.id).needs_reauth = True  # type: ignore[union-attr]
    response = client.get("/", query_string={"shop": "demo.myshopify.com", "id_token": make_session_token()})
    assert response.status_code == 200
    assert len(exchanges) == 1
    refreshed = shop_row(app, "demo.myshopify.com")
    assert refreshed is not None
    assert not refreshed.needs_reauth
    assert access_token(refreshed, app.extensions["popsync.keyring"]) == "shpat_exchanged"
    assert requeued == [shop.id]


def test_app_home_with_a_stale_id_token_bounces(client: FlaskClient, exchanges: list[httpx.Request]) -> None:
    token = make_session_token(exp_in=-120, nbf_in=-180)
    response = client.get("/", query_string={"shop": "demo.myshopify.com", "id_token": token})
    assert response.status_code == 302
    assert urlsplit(response.location).path == "/auth/patch-id-token"
    assert exchanges == []


def test_app_home_with_a_forged_dest_is_refused(client: FlaskClient, exchanges: list[httpx.Request]) -> None:
    token = make_session_token(dest="https://evil.com", iss="https://evil.com/admin")
    response = client.get("/", query_string={"shop": "demo.myshopify.com", "id_token": token})
    assert response.status_code == 401
    assert exchanges == []


def test_app_home_when_shopify_refuses_the_exchange(
    app: Flask, client: FlaskClient, exchanges: list[httpx.Request], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_client"})

    monkeypatch.setattr(httpx.MockTransport, "handle_request", refuse)
    token = make_session_token("fresh.myshopify.com")
    response = client.get("/", query_string={"shop": "fresh.myshopify.com", "id_token": token})
    assert response.status_code == 502
    assert shop_row(app, "fresh.myshopify.com") is None


def test_patch_id_token_page(client: FlaskClient) -> None:
    response = client.get(
        "/auth/patch-id-token?" + urlencode({"shop": "demo.myshopify.com", "shopify-reload": "/?a=1"})
    )
    assert response.status_code == 200
    assert f'data-api-key="{API_KEY}"'.encode() in response.data
    assert "demo.myshopify.com" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "query",
    [
        {"shop": "evil.com", "shopify-reload": "/"},
        {"shop": "demo.myshopify.com *", "shopify-reload": "/"},
        {"shop": "demo.myshopify.com", "shopify-reload": "//evil.com/"},
        {"shop": "demo.myshopify.com", "shopify-reload": "https://evil.com/"},
        {"shop": "demo.myshopify.com"},
    ],
)
def test_patch_id_token_page_refuses_bad_values(client: FlaskClient, query: dict[str, str]) -> None:
    assert client.get("/auth/patch-id-token?" + urlencode(query)).status_code == 400


# --- session tokens on the admin API --------------------------------------------------------------------


def test_a_session_token_authenticates_the_admin_api(client: FlaskClient, shop: Shop) -> None:
    response = client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {make_session_token()}"})
    assert response.status_code == 200
    assert response.get_json()["contacts"] == []


@pytest.mark.parametrize(
    "token",
    [
        make_session_token(aud="another-app"),
        make_session_token(secret="shpss_someone_elses_secret_0123456789ab"),
        make_session_token(exp_in=-60, nbf_in=-120),
        make_session_token(dest="https://evil.com"),
        "garbage",
    ],
)
def test_an_invalid_session_token_asks_app_bridge_to_retry(
    client: FlaskClient, shop: Shop, token: str
) -> None:
    response = client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"


def test_a_session_token_of_a_shop_that_is_not_installed(app: Flask, client: FlaskClient, shop: Shop) -> None:
    unknown = client.get(
        "/api/v1/contacts", headers={"Authorization": f"Bearer {make_session_token('other.myshopify.com')}"}
    )
    assert unknown.status_code == 401
    assert unknown.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"
    with get_database(app).write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = shop.installed_at  # type: ignore[union-attr]
    gone = client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {make_session_token()}"})
    assert gone.status_code == 401
    assert gone.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"


def test_api_keys_still_work(app: Flask, client: FlaskClient, shop: Shop) -> None:
    key = add_api_key(app, shop)
    assert client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    bad = client.get("/api/v1/contacts", headers={"Authorization": "Bearer psk_not_a_key"})
    assert bad.status_code == 401
    assert "X-Shopify-Retry-Invalid-Session-Request" not in bad.headers


def test_a_session_token_reaches_only_its_own_shop(
    app: Flask, client: FlaskClient, service: ContactService, shop: Shop
) -> None:
    add_shop(app, "other.myshopify.com")
    service.sync(shop.id, Collected(email="ann@example.com"), source=Source.FORM)

    def listed(domain: str) -> list[str]:
        headers = {"Authorization": f"Bearer {make_session_token(domain)}"}
        return [c["email"] for c in client.get("/api/v1/contacts", headers=headers).get_json()["contacts"]]

    assert listed("demo.myshopify.com") == ["ann@example.com"]
    assert listed("other.myshopify.com") == []
