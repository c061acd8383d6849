"""SHOPLINE install and open (reference/shopline.md §1): the signed app URL, the authorize redirect, the
callback, and the development store minting the token, through to the admin session.

Every refused request is checked to have made no outbound request (``responses`` answers nothing, so any
attempt is recorded as a refused connection)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from urllib.parse import parse_qs
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import responses
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import session_shop
from app.auth.shopline import STATE_COOKIE
from app.auth.shopline import bp
from app.db import get_database
from app.db import utcnow
from app.models import CustomerPull
from app.models import Shop
from app.models import UsedSignature
from app.platforms.devstore import DevStore
from app.platforms.devstore import shopline_api
from app.platforms.shopline_signing import sign_get
from app.platforms.shopline_signing import sign_post
from app.platforms.shopline_webhooks import TOPICS
from app.shops import access_token
from app.shops import register_shop
from tests.conftest import app_config
from tests.devstore_server import RunningDevStore
from tests.devstore_server import running_devstore

APP_KEY = "shopline-app-key-for-tests"
SECRET = "shopline-app-secret-for-tests"
HANDLE = "demo"
DOMAIN = "demo.myshopline.com"
APP_URL = "http://popsync.test"


@pytest.fixture
def devstore() -> Iterator[RunningDevStore]:
    # The token endpoint checks the app's signature with the secret the store was given.
    store = DevStore(webhook_secrets={"shopline": SECRET})
    with running_devstore(store) as running:
        yield running
    store.engine.dispose()


@pytest.fixture
def app(engine: sa.Engine, connection: sa.Connection, devstore: RunningDevStore) -> Flask:
    config = app_config(
        engine.url.render_as_string(hide_password=False),
        DATABASE_ENGINE=engine,
        SHOPLINE_APP_KEY=APP_KEY,
        SHOPLINE_APP_SECRET=SECRET,
        SHOPLINE_ADMIN_ORIGIN=devstore.origin,
    )
    application = create_app(config)
    application.config["TESTING"] = True
    get_database(application).bind_to(connection)
    if bp.name not in application.blueprints:
        application.register_blueprint(bp)
    return application


@pytest.fixture
def no_outbound() -> Iterator[responses.RequestsMock]:
    """Any outbound HTTP request during the block is recorded and refused."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


def now_ms() -> str:
    return str(int(time.time() * 1000))


def signed(secret: str = SECRET, **params: str) -> str:
    """A query string signed as SHOPLINE signs it (sorted decoded parameters, hex HMAC-SHA256)."""
    return urlencode({**params, "sign": sign_get(params, secret)})


def open_query(handle: str = HANDLE, **extra: str) -> str:
    return signed(appkey=APP_KEY, handle=handle, lang="en", timestamp=now_ms(), **extra)


def callback_query(state: str, handle: str = HANDLE, code: str = "auth-code-1", **extra: str) -> str:
    params = {"appkey": APP_KEY, "code": code, "handle": handle, "timestamp": now_ms(), "customField": state}
    return signed(**{**params, **extra})


def fragment_params(location: str) -> dict[str, str]:
    fragment = urlsplit(location).fragment
    route, _, query = fragment.partition("?")
    assert route == "/oauth/authorize"
    return dict(parse_qsl(query))


def set_cookie_header(response: object, name: str) -> str:
    headers = response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
    return next(h for h in headers if h.startswith(f"{name}="))


def cookie_value(header: str, name: str) -> str:
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie[name].value


def start_install(client: FlaskClient) -> str:
    """Open the app for a shop that is not installed; the state nonce SHOPLINE will echo back."""
    response = client.get(f"/shopline?{open_query()}")
    assert response.status_code == 302
    return fragment_params(response.headers["Location"])["customField"]


def shopline_shop(app: Flask, domain: str = DOMAIN) -> Shop | None:
    with get_database(app).sessionmaker() as session:
        return session.scalars(sa.select(Shop).where(Shop.domain == domain)).first()


# -- signatures ----------------------------------------------------------------------------------------


def test_the_published_signature_vectors_still_hold() -> None:
    # reference/shopline.md §1.8: the official Go SDK's vectors.
    secret, timestamp = "LDLLJJLflja2039203flaflaLLFLE", "21c335b3a"
    assert (
        sign_post("", timestamp, secret) == "cf5edab6b92d740fe54b3ce9e2723788128384a1eb5c2a5d64c9210a31185b86"
    )
    assert (
        sign_post('{"code":"code"}', timestamp, secret)
        == "4c4cf0ac52439d1308b58897f857dcba8545efb6c0e8091fba64b148218d2074"
    )


# -- the whole path -------------------------------------------------------------------------------------


def test_install_authorize_callback_token_webhooks_session_and_reopen(
    app: Flask, client: FlaskClient, devstore: RunningDevStore
) -> None:
    # 1. SHOPLINE opens the app URL for a store that has not installed popsync.
    opened = client.get(f"/shopline?{open_query()}")
    assert opened.status_code == 302
    location = opened.headers["Location"]
    assert location.startswith(f"https://{DOMAIN}/admin/oauth-web/#/oauth/authorize?")
    authorize = fragment_params(location)
    assert authorize["appKey"] == APP_KEY
    assert authorize["responseType"] == "code"
    assert authorize["scope"] == "read_customers,write_customers"
    assert authorize["redirectUri"] == f"{APP_URL}/auth/shopline/callback"
    state = authorize["customField"]
    assert len(state) >= 32
    state_cookie = set_cookie_header(opened, STATE_COOKIE)
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/auth/shopline", "Max-Age=600"):
        assert attribute in state_cookie
    assert state not in cookie_value(state_cookie, STATE_COOKIE)  # sealed, not readable
    assert opened.headers["Cache-Control"] == "no-store"
    assert shopline_shop(app) is None

    # 2. The merchant grants access; SHOPLINE sends them back with a code.
    returned = client.get(f"/auth/shopline/callback?{callback_query(state)}")
    assert returned.status_code == 302
    assert returned.headers["Location"] == "/admin"
    session_cookie = set_cookie_header(returned, COOKIE_NAME)
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"):
        assert attribute in session_cookie
    # The state is used up.
    assert cookie_value(set_cookie_header(returned, STATE_COOKIE), STATE_COOKIE) == ""

    # 3. The development store minted the token, and popsync stored it sealed with its expiry.
    shop = shopline_shop(app)
    assert shop is not None
    assert shop.platform == "shopline"
    assert shop.installed
    token = access_token(shop, app.extensions["popsync.keyring"])
    assert token is not None
    assert token not in (shop.access_token or "")
    assert devstore.store.shop_for_token("shopline", token, DOMAIN) is not None
    assert shop.access_token_expires_at is not None
    assert shop.access_token_expires_at > utcnow()

    # The install queued the backfill of the store's existing customers.
    with get_database(app).sessionmaker() as session:
        queued = session.scalars(sa.select(CustomerPull).where(CustomerPull.shop_id == shop.id)).all()
        assert [(pull.kind, pull.status) for pull in queued] == [("backfill", "queued")]

    # 4. The store's webhooks point at the app.
    subscriptions = shopline_api.list_subscriptions(devstore.store, DOMAIN)
    assert sorted(sub["topic"] for sub in subscriptions) == sorted(TOPICS)
    assert {sub["address"] for sub in subscriptions} == {f"{APP_URL}/webhooks/shopline"}

    # 5. The session cookie names the shop.
    with app.test_request_context(
        headers={"Cookie": f"{COOKIE_NAME}={cookie_value(session_cookie, COOKIE_NAME)}"}
    ):
        current = session_shop()
        assert current is not None
        assert current.id == shop.id

    # 6. Opening the app again goes straight to the admin, with no call to SHOPLINE.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        reopened = client.get(f"/shopline?{open_query()}")
        assert len(mocked.calls) == 0
    assert reopened.status_code == 302
    assert reopened.headers["Location"] == "/admin"
    assert COOKIE_NAME in set_cookie_header(reopened, COOKIE_NAME)


def test_a_reinstall_reuses_the_shop_and_keeps_one_subscription_per_topic(
    app: Flask, client: FlaskClient, devstore: RunningDevStore
) -> None:
    state = start_install(client)
    assert client.get(f"/auth/shopline/callback?{callback_query(state)}").status_code == 302
    first = shopline_shop(app)
    assert first is not None
    with get_database(app).write_transaction() as session:
        session.get(Shop, first.id).uninstalled_at = utcnow()  # type: ignore[union-attr]

    # An uninstalled shop is sent to authorise again.
    state = start_install(client)
    assert (
        client.get(f"/auth/shopline/callback?{callback_query(state, code='auth-code-2')}").status_code == 302
    )
    again = shopline_shop(app)
    assert again is not None
    assert again.id == first.id
    assert again.installed
    assert len(shopline_api.list_subscriptions(devstore.store, DOMAIN)) == len(TOPICS)


def test_a_shop_with_an_expired_token_is_sent_to_authorise(app: Flask, client: FlaskClient) -> None:
    with get_database(app).write_transaction() as session:
        shop = register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform="shopline",
            domain=DOMAIN,
            token="old-token",
            expires_at=utcnow(),
        )
    assert shop.installed
    response = client.get(f"/shopline?{open_query()}")
    assert response.status_code == 302
    assert "/admin/oauth-web/#/oauth/authorize?" in response.headers["Location"]


def test_a_failed_webhook_subscription_does_not_stop_the_install(
    app: Flask, client: FlaskClient, devstore: RunningDevStore
) -> None:
    state = start_install(client)
    # Every Open API call fails (the token calls are not affected by the store's faults).
    devstore.store.faults.configure(error=1.0)
    returned = client.get(f"/auth/shopline/callback?{callback_query(state)}")
    devstore.store.faults.configure(error=0.0)
    assert returned.status_code == 302
    assert returned.headers["Location"] == "/admin"
    assert shopline_shop(app) is not None
    assert shopline_api.list_subscriptions(devstore.store, DOMAIN) == []


# -- refused before anything is done -----------------------------------------------------------------------

BAD_HANDLES = [
    "evil.com",
    "x.myshopline.com.evil.com",
    "x.myshopline.com@evil.com",
    "evil.com/x.myshopline.com",
    "x.myshopline.com:443",
    "x.myshopify.com",
    "",
    "-demo",
    "Demo",
    "demo_shop",
    "demo ",
    "a" * 61,
]


@pytest.mark.parametrize("handle", BAD_HANDLES)
def test_open_refuses_a_handle_that_is_not_a_store(
    client: FlaskClient, no_outbound: responses.RequestsMock, handle: str
) -> None:
    response = client.get(f"/shopline?{open_query(handle=handle)}")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert len(no_outbound.calls) == 0


@pytest.mark.parametrize("handle", BAD_HANDLES)
def test_callback_refuses_a_handle_that_is_not_a_store(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock, handle: str
) -> None:
    state = start_install(client)
    response = client.get(f"/auth/shopline/callback?{callback_query(state, handle=handle)}")
    assert response.status_code == 400
    assert len(no_outbound.calls) == 0
    assert shopline_shop(app) is None


def test_the_full_domain_is_accepted_as_a_handle(client: FlaskClient) -> None:
    response = client.get(f"/shopline?{open_query(handle=DOMAIN)}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"https://{DOMAIN}/admin/oauth-web/")


@pytest.mark.parametrize(
    ("query", "status"),
    [
        pytest.param(lambda: "", 400, id="empty"),
        pytest.param(
            lambda: urlencode({"appkey": APP_KEY, "handle": HANDLE, "timestamp": now_ms()}),
            401,
            id="unsigned",
        ),
        pytest.param(lambda: open_query(secret="not-the-app-secret"), 401, id="forged"),
        pytest.param(lambda: open_query().replace("lang=en", "lang=fr"), 401, id="tampered"),
        pytest.param(lambda: open_query() + "&extra=1", 401, id="added-after-signing"),
        pytest.param(
            lambda: signed(appkey="another-app", handle=HANDLE, timestamp=now_ms()), 401, id="other-app"
        ),
        pytest.param(
            lambda: signed(
                appkey=APP_KEY, handle=HANDLE, timestamp=str(int(time.time() * 1000) - 11 * 60_000)
            ),
            401,
            id="expired",
        ),
        pytest.param(
            lambda: signed(
                appkey=APP_KEY, handle=HANDLE, timestamp=str(int(time.time() * 1000) + 11 * 60_000)
            ),
            401,
            id="future",
        ),
        pytest.param(
            lambda: signed(appkey=APP_KEY, handle=HANDLE, timestamp="soon"), 401, id="bad-timestamp"
        ),
        pytest.param(lambda: signed(appkey=APP_KEY, handle=HANDLE), 401, id="no-timestamp"),
        pytest.param(lambda: open_query() + f"&handle={HANDLE}", 400, id="repeated"),
    ],
)
def test_open_refuses_forged_expired_and_malformed_requests(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock, query: object, status: int
) -> None:
    response = client.get(f"/shopline?{query()}")  # type: ignore[operator]
    assert response.status_code == status
    assert "Location" not in response.headers
    assert STATE_COOKIE not in response.headers.get("Set-Cookie", "")
    assert len(no_outbound.calls) == 0


def test_a_signed_open_is_honoured_once(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    """A leaked open URL (history, logs) is still inside its ten minutes: it must not open the admin again."""
    with get_database(app).write_transaction() as session:
        register_shop(
            session, app.extensions["popsync.keyring"], platform="shopline", domain=DOMAIN, token="t"
        )
    query = open_query()
    first = client.get(f"/shopline?{query}")
    assert first.status_code == 302
    assert COOKIE_NAME in first.headers.get("Set-Cookie", "")
    replayed = app.test_client().get(f"/shopline?{query}")
    assert replayed.status_code == 401
    assert "already used" in replayed.get_data(as_text=True)
    assert COOKIE_NAME not in replayed.headers.get("Set-Cookie", "")
    with get_database(app).sessionmaker() as session:
        [used] = session.scalars(sa.select(UsedSignature)).all()
    assert used.purpose == "shopline-open"
    assert parse_qs(query)["sign"][0] not in used.digest  # only a hash of it is kept
    assert len(no_outbound.calls) == 0


def test_a_forged_open_request_never_opens_an_installed_shops_admin(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    with get_database(app).write_transaction() as session:
        register_shop(
            session, app.extensions["popsync.keyring"], platform="shopline", domain=DOMAIN, token="t"
        )
    response = client.get(f"/shopline?{open_query(secret='guessed-secret')}")
    assert response.status_code == 401
    assert COOKIE_NAME not in response.headers.get("Set-Cookie", "")
    assert len(no_outbound.calls) == 0


def test_callback_refuses_forged_signatures(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)
    params = {"appkey": APP_KEY, "code": "c", "handle": HANDLE, "timestamp": now_ms(), "customField": state}
    forged = urlencode({**params, "sign": sign_get(params, "not-the-app-secret")})
    assert client.get(f"/auth/shopline/callback?{forged}").status_code == 401
    tampered = callback_query(state).replace("code=auth-code-1", "code=another-code")
    assert client.get(f"/auth/shopline/callback?{tampered}").status_code == 401
    assert len(no_outbound.calls) == 0
    assert shopline_shop(app) is None


def test_callback_refuses_an_expired_request(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)
    old = str(int(time.time() * 1000) - 11 * 60_000)
    response = client.get(f"/auth/shopline/callback?{callback_query(state, timestamp=old)}")
    assert response.status_code == 401
    assert len(no_outbound.calls) == 0
    assert shopline_shop(app) is None


def test_callback_refuses_a_state_it_did_not_issue(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    start_install(client)
    response = client.get(f"/auth/shopline/callback?{callback_query('a-state-from-elsewhere')}")
    assert response.status_code == 403
    assert len(no_outbound.calls) == 0
    assert shopline_shop(app) is None


def test_callback_refuses_without_the_state_cookie(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)
    client.delete_cookie(STATE_COOKIE, path="/auth/shopline")
    assert client.get(f"/auth/shopline/callback?{callback_query(state)}").status_code == 403
    # And without a customField at all.
    params = {"appkey": APP_KEY, "code": "c", "handle": HANDLE, "timestamp": now_ms()}
    assert client.get(f"/auth/shopline/callback?{signed(**params)}").status_code == 403
    assert len(no_outbound.calls) == 0


def test_callback_refuses_a_state_issued_for_another_shop(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)  # for demo.myshopline.com
    response = client.get(f"/auth/shopline/callback?{callback_query(state, handle='other')}")
    assert response.status_code == 403
    assert len(no_outbound.calls) == 0


def test_callback_refuses_a_forged_state_cookie(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)
    client.set_cookie(STATE_COOKIE, "x" * 80, path="/auth/shopline")
    assert client.get(f"/auth/shopline/callback?{callback_query(state)}").status_code == 403
    assert len(no_outbound.calls) == 0


def test_callback_without_a_code_asks_for_no_token(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)
    params = {"appkey": APP_KEY, "handle": HANDLE, "timestamp": now_ms(), "customField": state}
    assert client.get(f"/auth/shopline/callback?{signed(**params)}").status_code == 400
    assert len(no_outbound.calls) == 0


def test_a_replayed_callback_is_refused_without_a_token_request(
    app: Flask, client: FlaskClient, devstore: RunningDevStore
) -> None:
    state = start_install(client)
    query = callback_query(state)
    first = client.get(f"/auth/shopline/callback?{query}")
    assert first.status_code == 302
    token = access_token(shopline_shop(app), app.extensions["popsync.keyring"])  # type: ignore[arg-type]

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        replayed = client.get(f"/auth/shopline/callback?{query}")
        assert len(mocked.calls) == 0
    assert replayed.status_code == 403
    assert COOKIE_NAME not in replayed.headers.get("Set-Cookie", "")
    # The token minted the first time is still the shop's.
    assert access_token(shopline_shop(app), app.extensions["popsync.keyring"]) == token  # type: ignore[arg-type]


def test_a_refused_callback_uses_up_the_state(
    app: Flask, client: FlaskClient, no_outbound: responses.RequestsMock
) -> None:
    state = start_install(client)
    tampered = callback_query(state).replace("code=auth-code-1", "code=x")
    assert client.get(f"/auth/shopline/callback?{tampered}").status_code == 401
    assert client.get(f"/auth/shopline/callback?{callback_query(state)}").status_code == 403
    assert len(no_outbound.calls) == 0


def test_a_code_shopline_refuses_is_403_and_installs_nothing(
    app: Flask, client: FlaskClient, devstore: RunningDevStore
) -> None:
    state = start_install(client)
    # The store checks the app's signature: a store given another secret refuses the token request.
    devstore.store.webhooks.secrets["shopline"] = "the-store-knows-another-secret"
    response = client.get(f"/auth/shopline/callback?{callback_query(state)}")
    assert response.status_code == 403
    assert shopline_shop(app) is None
    assert SECRET not in response.get_data(as_text=True)


def test_nothing_is_answered_when_shopline_is_not_configured(
    engine: sa.Engine, connection: sa.Connection, no_outbound: responses.RequestsMock
) -> None:
    application = create_app(
        app_config(engine.url.render_as_string(hide_password=False), DATABASE_ENGINE=engine)
    )
    get_database(application).bind_to(connection)
    if bp.name not in application.blueprints:
        application.register_blueprint(bp)
    client = application.test_client()
    assert client.get(f"/shopline?{open_query()}").status_code == 503
    assert client.get(f"/auth/shopline/callback?{callback_query('s')}").status_code == 503
    assert len(no_outbound.calls) == 0
