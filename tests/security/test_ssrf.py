"""SSRF through the shop parameter: whatever an attacker puts where a shop domain goes, popsync makes no
outgoing request to anything but a valid shop domain, and stores no shop.

Every route that takes a shop from the outside is tried with hostile values, signed wherever the route
checks a signature (so the value reaches the code behind the check). The outgoing-connection guard
(conftest.py) records every host name looked up and every address connected to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.auth.shopify import query_hmac
from app.db import Database
from app.models import Shop
from app.platforms.shopline_signing import sign_get
from app.shops import ShopError
from app.shops import normalize_shop_domain
from app.storefront.proxy import proxy_message
from tests.security.conftest import SHOPIFY_SECRET
from tests.security.conftest import SHOPLINE_KEY
from tests.security.conftest import SHOPLINE_SECRET
from tests.security.conftest import Outbound
from tests.security.conftest import session_token

HOSTILE_SHOPS = [
    "evil.com",
    "x.myshopify.com.evil.com",
    "x.myshopify.com@evil.com",
    "evil.com#x.myshopify.com",
    "evil.com?x.myshopify.com",
    "evil.com/x.myshopify.com",
    "evil.com\\x.myshopify.com",
    "x.myshopify.com\\@evil.com",
    "https://evil.com/.myshopify.com",
    "127.0.0.1",
    "169.254.169.254",
    "[::1]",
    "0x7f000001",
    "localhost",
    "localhost.myshopify.com:22",
    "x.myshopify.com:8080",
    "x.myshopify.com:443@evil.com",
    "x.myshopify.com.",
    "x..myshopify.com",
    "..",
    "../../evil.com",
    "x.myshopify.com/../../evil.com",
    "x.myshopify.com%2F%2E%2E%2Fevil.com",
    "x.myshopify.com%40evil.com",
    "\uff58.myshopify.com",  # fullwidth x
    "\u0455hop.myshopify.com",  # Cyrillic s
    "x.myshopify.com\u3002evil.com",  # ideographic full stop
    "x.myshopify\u2024com",  # one dot leader
    "x.myshopify.com\x00.evil.com",
    "x.myshopify.com\r\nHost: evil.com",
    "x .myshopify.com",
    "-x.myshopify.com",
    "x.myshopline.com.evil.com",
    "x.myshopline.com@evil.com",
]
HOSTILE_HANDLES = [
    shop.replace("myshopify", "myshopline") for shop in HOSTILE_SHOPS if "myshopify" in shop
] + ["evil.com", "127.0.0.1", "..", "x/../evil", "x@evil.com", "x:80", "x#", "\uff58"]


def shop_rows(db: Database) -> list[str]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Shop.domain)))


@pytest.mark.nodb
@pytest.mark.parametrize("value", HOSTILE_SHOPS)
def test_no_hostile_value_is_a_shop_domain(value: str) -> None:
    with pytest.raises(ShopError):
        normalize_shop_domain(value)


def _signed_shopify_query(**params: str) -> str:
    params = {**params, "timestamp": str(int(time.time()))}
    return urlencode({**params, "hmac": query_hmac(params, SHOPIFY_SECRET)})


def _signed_shopline_query(**params: str) -> str:
    params = {"appkey": SHOPLINE_KEY, "timestamp": str(int(time.time() * 1000)), **params}
    return urlencode({**params, "sign": sign_get(params, SHOPLINE_SECRET)})


def _signed_proxy_query(shop: str) -> str:
    pairs = [("shop", shop), ("timestamp", str(int(time.time())))]
    signature = hmac.new(SHOPIFY_SECRET.encode(), proxy_message(pairs).encode(), hashlib.sha256).hexdigest()
    return urlencode([*pairs, ("signature", signature)])


def _signed_webhook(client: FlaskClient, platform: str, shop: str) -> Any:
    body = json.dumps({"id": 1, "email": "ann@example.com", "updated_at": "2030-01-01T00:00:00Z"}).encode()
    secret = SHOPIFY_SECRET if platform == "shopify" else SHOPLINE_SECRET
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    prefix = "X-Shopify" if platform == "shopify" else "X-Shopline"
    return client.post(
        f"/webhooks/{platform}",
        data=body,
        content_type="application/json",
        headers={
            f"{prefix}-Hmac-Sha256": base64.b64encode(digest).decode(),
            f"{prefix}-Topic": "customers/create",
            f"{prefix}-Shop-Domain": shop,
            f"{prefix}-Webhook-Id": f"ssrf-{hashlib.sha256(shop.encode()).hexdigest()[:16]}",
        },
    )


def _attempts(client: FlaskClient, shop: str) -> dict[str, Any]:
    """Every way in that takes a shop, with ``shop`` in it; name -> answer."""
    quoted = urlencode({"shop": shop})
    token = session_token("x.myshopify.com", dest=f"https://{shop}", iss=f"https://{shop}/admin")
    answers = {
        "install": client.get(f"/auth/shopify?{quoted}"),
        "signed install": client.get(f"/auth/shopify?{_signed_shopify_query(shop=shop)}"),
        "signed callback": client.get(
            f"/auth/shopify/callback?{_signed_shopify_query(shop=shop, code='c', state='s')}"
        ),
        "patch id token": client.get(f"/auth/patch-id-token?{quoted}&shopify-reload=/admin"),
        "app home": client.get(f"/?{quoted}&embedded=1&id_token={token}"),
        "admin page": client.get(f"/admin?{quoted}&embedded=1&id_token={token}"),
        "storefront forms": client.get(f"/storefront/forms?{quoted}"),
        "storefront submission": client.post(
            "/storefront/submissions", json={"shop": shop, "email": "ann@example.com"}
        ),
        "proxy submission": client.post(
            f"/proxy/submissions?{_signed_proxy_query(shop)}", json={"email": "ann@example.com"}
        ),
    }
    if "\n" not in shop:  # a header cannot carry a line break (the test client refuses to send one)
        answers["admin API"] = client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {token}"})
        answers["shopify webhook"] = _signed_webhook(client, "shopify", shop)
        answers["shopline webhook"] = _signed_webhook(client, "shopline", shop)
    return answers


def test_hostile_shops_reach_no_host(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    problems = []
    for shop in HOSTILE_SHOPS:
        for way, answer in _attempts(client, shop).items():
            ignored = answer.is_json and str(answer.json.get("outcome", "")).startswith("ignored")
            location = answer.headers.get("Location", "")
            # The embedded admin sends a page without a valid token to this app's own patch-ID-token page.
            local = answer.status_code == 302 and not urlsplit(location).netloc and location.startswith("/")
            if not (400 <= answer.status_code < 500 or ignored or local):
                problems.append(f"{way} with {shop!r}: {answer.status_code} {location}")
    assert problems == []
    assert outbound.hosts() == []
    assert shop_rows(db) == []


def test_hostile_shopline_handles_reach_no_host(
    app: Flask, client: FlaskClient, db: Database, outbound: Outbound
) -> None:
    for handle in HOSTILE_HANDLES:
        opened = client.get(f"/shopline?{_signed_shopline_query(handle=handle, lang='en')}")
        assert opened.status_code == 400, (handle, opened.status_code)
        callback = client.get(
            f"/auth/shopline/callback?{_signed_shopline_query(handle=handle, code='c', customField='s')}"
        )
        assert callback.status_code == 400, (handle, callback.status_code)
    assert outbound.hosts() == []
    assert shop_rows(db) == []


def test_the_guard_sees_a_request_to_a_valid_shop(
    app: Flask, client: FlaskClient, outbound: Outbound
) -> None:
    """The control: a genuine token exchange for a valid shop does try to reach that shop (and only it), so
    the silence above is the app refusing, not the guard missing requests."""
    token = session_token("valid-shop.myshopify.com")
    answer = client.get(f"/?shop=valid-shop.myshopify.com&embedded=1&id_token={token}")
    assert answer.status_code == 502
    assert outbound.hosts()
    assert all(host.startswith("valid-shop.myshopify.com") for host in outbound.lookups), outbound.hosts()
