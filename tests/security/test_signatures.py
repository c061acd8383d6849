"""Signature bypasses: webhooks (Shopify, SHOPLINE), the app proxy, the installs and their callbacks.

Every forged request is refused (401, or a 4xx naming what is wrong) and leaves no trace: no delivery
recorded, no job queued, no contact, no shop, no token request (the outgoing-connection guard sees
nothing). Each attack has a control: the same request signed properly is accepted, so a refusal is about
the signature and not about something else the test got wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.auth.shopify import STATE_COOKIE as SHOPIFY_STATE_COOKIE
from app.auth.shopify import query_hmac
from app.db import Database
from app.models import Contact
from app.models import OutboxItem
from app.models import Shop
from app.models import UsedSignature
from app.models import WebhookDelivery
from app.platforms.shopline_signing import sign_get
from app.storefront.proxy import proxy_message
from tests.conftest import add_shop
from tests.security.conftest import SHOPIFY_SECRET
from tests.security.conftest import SHOPLINE_KEY
from tests.security.conftest import SHOPLINE_SECRET
from tests.security.conftest import Outbound
from tests.security.conftest import session_token

OTHER_SECRET = "a-secret-that-is-not-this-apps-0123456789"
SHOPIFY_SHOP = "victim.myshopify.com"
SHOPLINE_SHOP = "victim.myshopline.com"
CUSTOMER_UPDATE = {
    "id": 4242,
    "admin_graphql_api_id": "gid://shopify/Customer/4242",
    "email": "ann@example.com",
    "first_name": "Ann",
    "updated_at": "2030-01-01T00:00:00Z",
}


def trace(db: Database) -> dict[str, Any]:
    """What a request could have left behind."""
    with db.sessionmaker() as session:
        counts = {
            model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (WebhookDelivery, OutboxItem, Contact, Shop, UsedSignature)
        }
        shops = {
            shop.domain: (shop.access_token is not None, shop.uninstalled_at is None)
            for shop in session.scalars(sa.select(Shop))
        }
    return {**counts, "shops": shops}


# --- webhooks -------------------------------------------------------------------------------------------


def shopify_signature(body: bytes, secret: str = SHOPIFY_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post_shopify(
    client: FlaskClient,
    body: bytes,
    signature: str | None,
    topic: str = "customers/update",
    webhook_id: str = "wh-1",
    shop: str = SHOPIFY_SHOP,
) -> Any:
    headers = {"X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": shop, "X-Shopify-Webhook-Id": webhook_id}
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    return client.post("/webhooks/shopify", data=body, headers=headers, content_type="application/json")


def _swapcase(signature: str) -> str:
    return signature.swapcase()


def forged_shopify_signatures(body: bytes) -> dict[str, str | None]:
    good = shopify_signature(body)
    return {
        "missing": None,
        "empty": "",
        "wrong": shopify_signature(b"another body"),
        "truncated": good[:-4],
        "one character short": good[:-1],
        "wrong case": _swapcase(good),
        "another secret": shopify_signature(body, OTHER_SECRET),
        "hex instead of base64": hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "the secret itself": SHOPIFY_SECRET,
        "padded": good + "AAAA",
        "non-ascii": good[:-1] + "é",
    }


def test_forged_shopify_webhooks_are_401_and_change_nothing(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    add_shop(app, SHOPIFY_SHOP)
    before = trace(db)
    for topic in ("customers/update", "customers/redact", "shop/redact", "app/uninstalled"):
        body = json.dumps({**CUSTOMER_UPDATE, "shop_domain": SHOPIFY_SHOP}).encode()
        for how, signature in forged_shopify_signatures(body).items():
            answer = post_shopify(client, body, signature, topic=topic, webhook_id=f"{topic}-{how}")
            assert answer.status_code == 401, (topic, how)
    assert trace(db) == before
    assert not outbound.any
    # The control: the same body, signed, is recorded.
    body = json.dumps(CUSTOMER_UPDATE).encode()
    assert post_shopify(client, body, shopify_signature(body)).json["outcome"] == "recorded"


def test_a_signature_covers_the_exact_body(app: Flask, client: FlaskClient, db: Database) -> None:
    add_shop(app, SHOPIFY_SHOP)
    body = json.dumps(CUSTOMER_UPDATE).encode()
    signature = shopify_signature(body)
    before = trace(db)
    for changed in (body + b" ", b" " + body, body.replace(b"Ann", b"Eve"), body[:-1]):
        assert post_shopify(client, changed, signature).status_code == 401
    assert trace(db) == before


def test_a_replayed_body_under_another_topic_or_shop_destroys_nothing(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    """Shopify signs only the body: the topic, shop and id headers are not covered. A body captured from
    one delivery (here a customer update) replayed under a destructive topic, or for another shop, must
    not uninstall or erase anything."""
    add_shop(app, SHOPIFY_SHOP)
    add_shop(app, "other.myshopify.com")
    body = json.dumps(CUSTOMER_UPDATE).encode()
    signature = shopify_signature(body)
    assert post_shopify(client, body, signature, webhook_id="original").status_code == 200
    before = trace(db)
    # (customers/data_request destroys nothing: it only gathers what the header's shop holds.)
    for topic in ("shop/redact", "customers/redact", "app/uninstalled"):
        for shop in (SHOPIFY_SHOP, "other.myshopify.com"):
            # The same delivery id is a duplicate; a fresh one is refused for its body's shape.
            for webhook_id in ("original", f"replay-{topic}-{shop}"):
                answer = post_shopify(client, body, signature, topic=topic, webhook_id=webhook_id, shop=shop)
                assert answer.status_code in (200, 400, 401), (topic, shop, answer.status_code)
                if answer.status_code == 200:
                    assert answer.json["outcome"] in ("duplicate",) or answer.json["outcome"].startswith(
                        "ignored"
                    ), (topic, shop, answer.json)
    assert trace(db) == before


def test_a_compliance_webhook_naming_another_shop_is_refused(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    """A genuine shop/redact of one shop, replayed with another shop's domain header, erases nothing."""
    add_shop(app, SHOPIFY_SHOP)
    add_shop(app, "other.myshopify.com")
    redact = json.dumps({"shop_id": 1, "shop_domain": "other.myshopify.com"}).encode()
    uninstalled = json.dumps({"id": 1, "myshopify_domain": "other.myshopify.com"}).encode()
    before = trace(db)
    for topic, body in (("shop/redact", redact), ("app/uninstalled", uninstalled)):
        answer = post_shopify(client, body, shopify_signature(body), topic=topic, webhook_id=f"x-{topic}")
        assert answer.status_code in (400, 401), (topic, answer.status_code)
    assert trace(db) == before
    # The control: for the shop it names, the uninstall goes through.
    answer = post_shopify(
        client,
        uninstalled,
        shopify_signature(uninstalled),
        topic="app/uninstalled",
        webhook_id="genuine",
        shop="other.myshopify.com",
    )
    assert answer.json["outcome"] == "recorded"
    assert trace(db)["shops"]["other.myshopify.com"] == (False, False)


def shopline_hex(body: bytes, secret: str = SHOPLINE_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_shopline(
    client: FlaskClient, body: bytes, signature: str | None, topic: str = "customers/update", wid: str = "1"
) -> Any:
    headers = {
        "X-Shopline-Topic": topic,
        "X-Shopline-Shop-Domain": SHOPLINE_SHOP,
        "X-Shopline-Webhook-Id": wid,
    }
    if signature is not None:
        headers["X-Shopline-Hmac-Sha256"] = signature
    return client.post("/webhooks/shopline", data=body, headers=headers, content_type="application/json")


def test_forged_shopline_webhooks_are_401_and_change_nothing(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    add_shop(app, SHOPLINE_SHOP, platform="shopline")
    body = json.dumps({"id": "77", "email": "ann@example.com", "updated_at": "2030-01-01T00:00:00Z"}).encode()
    good_hex = shopline_hex(body)
    good_base64 = base64.b64encode(bytes.fromhex(good_hex)).decode()
    forged = {
        "missing": None,
        "empty": "",
        "wrong": shopline_hex(b"{}"),
        "truncated hex": good_hex[:-2],
        "truncated base64": good_base64[:-4],
        "base64 in the wrong case": good_base64.swapcase(),
        "another secret": shopline_hex(body, OTHER_SECRET),
        "Shopify's secret": shopline_hex(body, SHOPIFY_SECRET),
        "hex with a stray character": good_hex[:-1] + "g",
    }
    before = trace(db)
    for topic in ("customers/update", "customers/redact", "merchants/redact", "apps/installed_uninstalled"):
        for how, signature in forged.items():
            answer = post_shopline(client, body, signature, topic=topic, wid=f"{topic}-{how}")
            assert answer.status_code == 401, (topic, how)
    assert trace(db) == before
    assert not outbound.any
    # Controls: hex in either case and base64 are all SHOPLINE's spellings of the same signature.
    for wid, signature in (("a", good_hex), ("b", good_hex.upper()), ("c", good_base64)):
        assert post_shopline(client, body, signature, wid=wid).status_code == 200


# --- the app proxy --------------------------------------------------------------------------------------


def proxy_query(params: list[tuple[str, str]], secret: str = SHOPIFY_SECRET) -> list[tuple[str, str]]:
    signature = hmac.new(secret.encode(), proxy_message(params).encode(), hashlib.sha256).hexdigest()
    return [*params, ("signature", signature)]


def test_forged_app_proxy_submissions_are_401_and_store_nothing(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    add_shop(app, SHOPIFY_SHOP)
    add_shop(app, "other.myshopify.com")
    now = str(int(time.time()))
    base = [("shop", SHOPIFY_SHOP), ("path_prefix", "/apps/popsync"), ("timestamp", now)]
    good = proxy_query(base)
    signature = good[-1][1]
    body = {"email": "ann@example.com", "shop": "other.myshopify.com"}
    attacks: dict[str, list[tuple[str, str]]] = {
        "no signature": base,
        "empty signature": [*base, ("signature", "")],
        "wrong signature": [*base, ("signature", "0" * 64)],
        "truncated": [*base, ("signature", signature[:-2])],
        "another secret": proxy_query(base, OTHER_SECRET),
        "signature twice": [*good, ("signature", signature)],
        "shop twice": [("shop", "other.myshopify.com"), *good],
        "timestamp twice": [*good, ("timestamp", now)],
        "customer id twice": [
            *proxy_query([*base, ("logged_in_customer_id", "1")]),
            ("logged_in_customer_id", "2"),
        ],
        "shop swapped after signing": [("shop", "other.myshopify.com"), *good[1:]],
        "customer id added after signing": [*good, ("logged_in_customer_id", "99")],
        "stale": proxy_query([("shop", SHOPIFY_SHOP), ("timestamp", str(int(time.time()) - 600))]),
        "from the future": proxy_query([("shop", SHOPIFY_SHOP), ("timestamp", str(int(time.time()) + 600))]),
        "no timestamp": proxy_query([("shop", SHOPIFY_SHOP)]),
    }
    before = trace(db)
    for how, query in attacks.items():
        answer = client.post(f"/proxy/submissions?{urlencode(query)}", json=body)
        assert answer.status_code == 401, (how, answer.status_code, answer.get_json())
    assert trace(db) == before
    # The control: signed properly, the submission is accepted for the signed shop, not the body's.
    accepted = client.post(f"/proxy/submissions?{urlencode(good)}", json=body)
    assert accepted.status_code == 200, accepted.get_json()
    with db.sessionmaker() as session:
        [contact] = session.scalars(sa.select(Contact)).all()
        assert session.get(Shop, contact.shop_id).domain == SHOPIFY_SHOP


# --- Shopify install, callback and app home -------------------------------------------------------------


def start_shopify_install(client: FlaskClient, shop: str = SHOPIFY_SHOP) -> str:
    answer = client.get(f"/auth/shopify?shop={shop}")
    assert answer.status_code == 302
    return dict(parse_qsl(urlsplit(answer.headers["Location"]).query))["state"]


def callback_params(state: str, shop: str = SHOPIFY_SHOP, **extra: str) -> dict[str, str]:
    params = {"code": "the-code", "shop": shop, "state": state, "timestamp": str(int(time.time())), **extra}
    return {**params, "hmac": query_hmac(params, SHOPIFY_SECRET)}


def test_forged_shopify_installs_set_nothing(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    stale = {"shop": SHOPIFY_SHOP, "timestamp": str(int(time.time()) - 3600)}
    tampered = {"shop": SHOPIFY_SHOP, "timestamp": str(int(time.time()))}
    for query in (
        {**stale, "hmac": query_hmac(stale, SHOPIFY_SECRET)},
        {**tampered, "hmac": query_hmac(tampered, OTHER_SECRET)},
        {**tampered, "hmac": ""},
        {**tampered, "hmac": query_hmac({**tampered, "shop": "other.myshopify.com"}, SHOPIFY_SECRET)},
    ):
        answer = client.get(f"/auth/shopify?{urlencode(query)}")
        assert answer.status_code == 401, query
        assert "Set-Cookie" not in answer.headers
        assert "Location" not in answer.headers
    assert not outbound.any


def test_forged_shopify_callbacks_request_no_token(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    state = start_shopify_install(client)
    before = trace(db)

    def tampered(**changes: str) -> dict[str, str]:
        return {**callback_params(state), **changes}

    attacks = {
        "no hmac": {k: v for k, v in callback_params(state).items() if k != "hmac"},
        "wrong hmac": tampered(hmac="0" * 64),
        "truncated hmac": tampered(hmac=callback_params(state)["hmac"][:-2]),
        "upper-case hmac": tampered(hmac=callback_params(state)["hmac"].upper()),
        "code swapped": tampered(code="another-code"),
        "shop swapped": tampered(shop="other.myshopify.com"),
        "state swapped": tampered(state="guessed"),
        "signed, wrong state": callback_params("guessed"),
        "signed, no state": {
            **(p := {"code": "c", "shop": SHOPIFY_SHOP, "timestamp": str(int(time.time()))}),
            "hmac": query_hmac(p, SHOPIFY_SECRET),
        },
        "signed, another shop than the install's": callback_params(state, shop="other.myshopify.com"),
        "signed, stale": callback_params(state, timestamp=str(int(time.time()) - 3600)),
        "signed with another secret": {
            **(p := {"code": "c", "shop": SHOPIFY_SHOP, "state": state, "timestamp": str(int(time.time()))}),
            "hmac": query_hmac(p, OTHER_SECRET),
        },
        "evil shop": callback_params(state, shop="victim.myshopify.com.evil.com"),
    }
    for how, params in attacks.items():
        answer = client.get(f"/auth/shopify/callback?{urlencode(params)}")
        assert 400 <= answer.status_code < 500, (how, answer.status_code)
    assert not outbound.any, outbound.hosts()
    assert trace(db) == before
    # Without the state cookie (another browser), even a perfectly signed callback is refused.
    client.delete_cookie(SHOPIFY_STATE_COOKIE, path="/auth/shopify")
    assert client.get(f"/auth/shopify/callback?{urlencode(callback_params(state))}").status_code == 403
    assert not outbound.any
    # The control: the real callback in the browser that started the install asks Shopify for a token.
    state = start_shopify_install(client)
    answer = client.get(f"/auth/shopify/callback?{urlencode(callback_params(state))}")
    assert answer.status_code == 502  # the guard refused the connection to Shopify
    assert any(SHOPIFY_SHOP in host for host in outbound.hosts())


def test_forged_session_tokens_on_the_app_home_exchange_nothing(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    before = trace(db)
    forged = [
        session_token(SHOPIFY_SHOP, secret=OTHER_SECRET),
        session_token(SHOPIFY_SHOP, aud="another-app"),
        session_token(SHOPIFY_SHOP, exp=int(time.time()) - 120),
        session_token(SHOPIFY_SHOP, dest="https://evil.com", iss="https://evil.com/admin"),
        session_token(SHOPIFY_SHOP, iss="https://other.myshopify.com/admin"),
        session_token(SHOPIFY_SHOP)[:-3],
    ]
    for token in forged:
        answer = client.get(f"/?shop={SHOPIFY_SHOP}&embedded=1&id_token={token}")
        assert answer.status_code in (302, 401), answer.status_code
        assert SHOPIFY_SHOP not in answer.headers.get("Location", "").split("?")[0]
    assert not outbound.any, outbound.hosts()
    assert trace(db) == before
    # The control: a genuine token for a shop without a token is exchanged (the guard refuses it).
    answer = client.get(f"/?shop={SHOPIFY_SHOP}&embedded=1&id_token={session_token(SHOPIFY_SHOP)}")
    assert answer.status_code == 502
    assert outbound.any


# --- SHOPLINE open and callback -------------------------------------------------------------------------


def shopline_query(secret: str = SHOPLINE_SECRET, **params: str) -> str:
    return urlencode({**params, "sign": sign_get(params, secret)})


def now_ms() -> str:
    return str(int(time.time() * 1000))


def test_forged_shopline_opens_and_callbacks_request_no_token(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    opening = {"appkey": SHOPLINE_KEY, "handle": "victim", "lang": "en", "timestamp": now_ms()}
    good = shopline_query(**opening)
    before = trace(db)
    for query in (
        urlencode(opening),
        shopline_query(OTHER_SECRET, **opening),
        shopline_query(**{**opening, "timestamp": str(int(now_ms()) - 3_600_000)}),
        shopline_query(**{**opening, "appkey": "another-app"}),
        shopline_query(**{**opening, "handle": "victim.myshopline.com.evil.com"}),
        good.replace("handle=victim", "handle=other"),
        good + "&handle=other",
    ):
        answer = client.get(f"/shopline?{query}")
        assert 400 <= answer.status_code < 500, (query, answer.status_code)
        assert "Set-Cookie" not in answer.headers
    assert trace(db) == before
    # The control: the genuine open sends the merchant to SHOPLINE's authorize page with a state.
    opened = client.get(f"/shopline?{good}")
    assert opened.status_code == 302
    fragment = urlsplit(opened.headers["Location"]).fragment.partition("?")[2]
    state = dict(parse_qsl(fragment))["customField"]
    # ...and a replay of the same signed open is refused.
    assert client.get(f"/shopline?{good}").status_code == 401
    before = trace(db)
    callback = {"appkey": SHOPLINE_KEY, "code": "c", "handle": "victim", "timestamp": now_ms()}
    for query in (
        shopline_query(**callback, customField="guessed"),
        shopline_query(**callback),
        shopline_query(**{**callback, "handle": "other"}, customField=state),
        shopline_query(OTHER_SECRET, **callback, customField=state),
        shopline_query(**callback, customField=state).replace("code=c", "code=d"),
        shopline_query(**callback, customField=state) + "&code=d",
    ):
        answer = client.get(f"/auth/shopline/callback?{query}")
        assert 400 <= answer.status_code < 500, (query, answer.status_code)
    assert not outbound.any, outbound.hosts()
    assert trace(db) == before


@pytest.mark.parametrize("path", ["/webhooks/shopify", "/webhooks/shopline", "/proxy/submissions"])
def test_unconfigured_secrets_verify_nothing(
    engine: sa.Engine, connection: sa.Connection, path: str, tmp_path: Any
) -> None:
    """An install without the platform's secret accepts no signature at all (an empty key signs
    anything an attacker likes)."""
    from app import create_app
    from app.db import get_database
    from tests.conftest import app_config

    config = app_config(
        engine.url.render_as_string(hide_password=False),
        DATABASE_ENGINE=engine,
        POPSYNC_INSTANCE_PATH=str(tmp_path),
    )
    application = create_app(config)
    get_database(application).bind_to(connection)
    add_shop(application, SHOPIFY_SHOP)
    body = json.dumps(CUSTOMER_UPDATE).encode()
    empty_key = hmac.new(b"", body, hashlib.sha256)
    query = urlencode(proxy_query([("shop", SHOPIFY_SHOP), ("timestamp", str(int(time.time())))], ""))
    answer = application.test_client().post(
        f"{path}?{query}",
        data=body,
        content_type="application/json",
        headers={
            "X-Shopify-Hmac-Sha256": base64.b64encode(empty_key.digest()).decode(),
            "X-Shopline-Hmac-Sha256": empty_key.hexdigest(),
            "X-Shopify-Topic": "customers/update",
            "X-Shopline-Topic": "customers/update",
            "X-Shopify-Shop-Domain": SHOPIFY_SHOP,
        },
    )
    assert answer.status_code == 401
