"""The signed first-party admin session: what the cookie looks like, and everything it refuses."""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from flask import Flask
from werkzeug.wrappers import Response

from app import create_app
from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import LIFETIME
from app.auth.admin_session import end_session
from app.auth.admin_session import open_session
from app.auth.admin_session import seal_session
from app.auth.admin_session import session_shop
from app.auth.admin_session import start_session
from app.crypto import Keyring
from app.db import get_database
from app.db import utcnow
from app.models import Shop
from tests.conftest import TEST_SECRET_KEY
from tests.conftest import add_shop
from tests.conftest import app_config


@pytest.fixture
def shopline_shop(app: Flask) -> Shop:
    return add_shop(app, "demo.myshopline.com", "shopline", region=None)


def _set_cookie(response: Response) -> tuple[str, str]:
    """The session cookie's value and its full Set-Cookie header."""
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE_NAME}="))
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie[COOKIE_NAME].value, header


def _started(app: Flask, shop: Shop, **kwargs: object) -> str:
    response = Response()
    with app.test_request_context():
        start_session(response, shop, **kwargs)  # type: ignore[arg-type]
    return _set_cookie(response)[0]


def _shop_for(app: Flask, value: str, **kwargs: object) -> Shop | None:
    with app.test_request_context(headers={"Cookie": f"{COOKIE_NAME}={value}"}):
        return session_shop(**kwargs)  # type: ignore[arg-type]


def test_a_fresh_session_names_its_shop(app: Flask, shopline_shop: Shop) -> None:
    value = _started(app, shopline_shop)
    shop = _shop_for(app, value)
    assert shop is not None
    assert (shop.id, shop.domain) == (shopline_shop.id, "demo.myshopline.com")


def test_the_cookie_is_httponly_lax_12_hours_and_reveals_nothing(app: Flask, shopline_shop: Shop) -> None:
    response = Response()
    with app.test_request_context():
        start_session(response, shopline_shop)
    value, header = _set_cookie(response)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert f"Max-Age={int(LIFETIME.total_seconds())}" in header
    assert "Secure" not in header  # APP_URL is http in the tests
    assert "demo" not in value


def test_the_cookie_is_secure_when_app_url_is_https(engine, connection) -> None:  # type: ignore[no-untyped-def]
    config = app_config(
        engine.url.render_as_string(hide_password=False), DATABASE_ENGINE=engine, APP_URL="https://p.example"
    )
    application = create_app(config)
    get_database(application).bind_to(connection)
    shop = add_shop(application, "demo.myshopline.com", "shopline", region=None)
    response = Response()
    with application.test_request_context():
        start_session(response, shop)
        end_session(ended := Response())
    assert "Secure" in _set_cookie(response)[1]
    assert "Secure" in _set_cookie(ended)[1]


def test_no_cookie_is_no_session(app: Flask, shopline_shop: Shop) -> None:
    with app.test_request_context():
        assert session_shop() is None


# Not the very last character: its lowest bits can be base64 padding, and flipping them decodes to the
# same bytes (the same, authentic, cookie).
@pytest.mark.parametrize("position", [0, 10, 40, -2])
def test_a_tampered_cookie_is_refused(app: Flask, shopline_shop: Shop, position: int) -> None:
    value = _started(app, shopline_shop)
    index = position % len(value)
    flipped = "A" if value[index] != "A" else "B"
    tampered = value[:index] + flipped + value[index + 1 :]
    assert _shop_for(app, tampered) is None
    assert _shop_for(app, value[:-4]) is None
    assert _shop_for(app, "not-a-session") is None


def test_an_expired_session_is_refused(app: Flask, shopline_shop: Shop) -> None:
    issued = utcnow()
    value = _started(app, shopline_shop, now=issued)
    assert _shop_for(app, value, now=issued + LIFETIME - timedelta(seconds=1)) is not None
    assert _shop_for(app, value, now=issued + LIFETIME) is None
    assert _shop_for(app, value, now=issued + LIFETIME + timedelta(days=30)) is None


def test_a_session_from_the_future_is_refused(app: Flask, shopline_shop: Shop) -> None:
    value = _started(app, shopline_shop, now=utcnow() + timedelta(hours=1))
    assert _shop_for(app, value) is None


def test_a_session_sealed_with_another_key_is_refused(app: Flask, shopline_shop: Shop) -> None:
    other = Keyring("a-completely-different-secret-key")
    assert _shop_for(app, seal_session(other, shopline_shop, utcnow())) is None


def test_a_session_sealed_with_a_previous_key_still_opens(shopline_shop: Shop) -> None:
    previous = Keyring(TEST_SECRET_KEY)
    rotated = Keyring("the-new-secret-key-0123456789", (TEST_SECRET_KEY,))
    value = seal_session(previous, shopline_shop, utcnow())
    claims = open_session(rotated, value, utcnow())
    assert claims is not None
    assert claims.shop_id == shopline_shop.id


def test_a_value_sealed_for_another_purpose_is_refused(app: Flask, shopline_shop: Shop) -> None:
    keyring: Keyring = app.extensions["popsync.keyring"]
    forged = keyring.seal("tracking", b'{"v":1,"shop_id":1,"domain":"demo.myshopline.com","iat":0,"exp":0}')
    assert _shop_for(app, forged) is None


def test_an_uninstalled_shop_has_no_session(app: Flask, shopline_shop: Shop) -> None:
    value = _started(app, shopline_shop)
    with get_database(app).write_transaction() as session:
        session.get(Shop, shopline_shop.id).uninstalled_at = utcnow()  # type: ignore[union-attr]
    assert _shop_for(app, value) is None


def test_a_reinstall_ends_the_sessions_of_the_previous_installation(app: Flask, shopline_shop: Shop) -> None:
    old = _started(app, shopline_shop, now=utcnow() - timedelta(hours=1))
    with get_database(app).write_transaction() as session:
        session.get(Shop, shopline_shop.id).installed_at = utcnow()  # type: ignore[union-attr]
    assert _shop_for(app, old) is None
    assert _shop_for(app, _started(app, shopline_shop)) is not None


def test_a_deleted_shop_has_no_session(app: Flask, shopline_shop: Shop) -> None:
    value = _started(app, shopline_shop)
    with get_database(app).write_transaction() as session:
        session.delete(session.get(Shop, shopline_shop.id))
    assert _shop_for(app, value) is None


def test_end_session_removes_the_cookie(app: Flask, shopline_shop: Shop) -> None:
    response = Response()
    with app.test_request_context():
        end_session(response)
    value, header = _set_cookie(response)
    assert value == ""
    assert "Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header


def test_flask_own_session_is_never_used(app: Flask) -> None:
    """popsync's sessions are the signed cookie above; Flask's own is switched off (NoFlaskSession): no
    cookie of its name is read or written, and code that tried to keep something there fails loudly."""
    from flask import session

    client = app.test_client()
    client.set_cookie("session", "anything")
    response = client.get("/healthz")
    assert "session=" not in response.headers.get("Set-Cookie", "")
    with app.test_request_context("/"):
        assert dict(session) == {}
        with pytest.raises(RuntimeError, match="Flask's session"):
            session["shop"] = "x"
