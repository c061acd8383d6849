"""POST /proxy/submissions: Shopify's app proxy signature (reference/shopify.md §3.2), the signed shop and
logged-in customer (rule 1), the client address Shopify appended, and the same answers as the storefront."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.db import Database
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.models import RateLimitCounter
from app.models import Shop
from app.storefront.proxy import ProxySignatureError
from app.storefront.proxy import proxy_message
from app.storefront.proxy import verify_proxy_query
from tests.conftest import add_shop

SECRET = "hush"
SHOP = "demo.myshopify.com"
PROXY_SETTINGS = {"SHOPIFY_API_KEY": "proxy-test-key", "SHOPIFY_API_SECRET": SECRET}

# Shopify's published example (authenticate-app-proxies), with the values the reference recomputed.
EXAMPLE = [
    ("extra", "1"),
    ("extra", "2"),
    ("shop", "shop-name.myshopify.com"),
    ("logged_in_customer_id", "1"),
    ("path_prefix", "/apps/awesome_reviews"),
    ("timestamp", "1317327555"),
]
EXAMPLE_SIGNATURE = "4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb"
EXAMPLE_SIGNATURE_LOGGED_OUT = "e072b6d7e6622d85912a5214b860d3100dc1e73d9bc29f43796ac8c9ff8093cb"


@pytest.fixture
def app_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**PROXY_SETTINGS, **getattr(request, "param", {})}


# --- the signature, as Shopify publishes it ---------------------------------------------------------------


@pytest.mark.nodb
def test_shopifys_published_example_verifies() -> None:
    assert proxy_message(EXAMPLE) == (
        "extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviews"
        "shop=shop-name.myshopify.comtimestamp=1317327555"
    )
    signed = verify_proxy_query([*EXAMPLE, ("signature", EXAMPLE_SIGNATURE)], [SECRET], now=1317327555)
    assert (signed.shop, signed.logged_in_customer_id) == ("shop-name.myshopify.com", "1")


@pytest.mark.nodb
def test_the_logged_out_example_verifies_with_no_customer() -> None:
    pairs = [(k, "" if k == "logged_in_customer_id" else v) for k, v in EXAMPLE]
    signed = verify_proxy_query(
        [*pairs, ("signature", EXAMPLE_SIGNATURE_LOGGED_OUT)], [SECRET], now=1317327600
    )
    assert signed.logged_in_customer_id is None


@pytest.mark.nodb
@pytest.mark.parametrize(
    ("pairs", "secrets", "now", "reason"),
    [
        ([*EXAMPLE, ("signature", EXAMPLE_SIGNATURE)], ["not-hush"], 1317327555, "bad signature"),
        ([*EXAMPLE, ("signature", EXAMPLE_SIGNATURE)], [SECRET], 1317327555 + 91, "stale"),
        ([*EXAMPLE, ("signature", EXAMPLE_SIGNATURE)], [SECRET], 1317327555 - 91, "stale"),
        (EXAMPLE, [SECRET], 1317327555, "missing signature"),
        (
            [*EXAMPLE[:2], ("extra", "3"), *EXAMPLE[2:], ("signature", EXAMPLE_SIGNATURE)],
            [SECRET],
            1317327555,
            "bad",
        ),
        ([*EXAMPLE, ("signature", EXAMPLE_SIGNATURE), ("signature", "x")], [SECRET], 1317327555, "repeated"),
        (
            [*EXAMPLE, ("shop", "evil.myshopify.com"), ("signature", EXAMPLE_SIGNATURE)],
            [SECRET],
            0,
            "repeated",
        ),
        ([*EXAMPLE, ("signature", EXAMPLE_SIGNATURE)], [""], 1317327555, "not configured"),
    ],
)
def test_anything_else_is_refused(
    pairs: list[tuple[str, str]], secrets: list[str], now: int, reason: str
) -> None:
    with pytest.raises(ProxySignatureError, match=reason):
        verify_proxy_query(pairs, secrets, now=now)


@pytest.mark.nodb
def test_the_previous_secret_still_verifies_during_a_rotation() -> None:
    signed = verify_proxy_query(
        [*EXAMPLE, ("signature", EXAMPLE_SIGNATURE)], ["new-secret", SECRET], now=1317327555
    )
    assert signed.shop == "shop-name.myshopify.com"


# --- the route -----------------------------------------------------------------------------------------


def signed_query(secret: str = SECRET, *, shop: str = SHOP, customer: str = "", skew: int = 0) -> str:
    """What Shopify appends to a proxied request, signed the way §3.2 says (written out independently)."""
    params = {
        "shop": shop,
        "logged_in_customer_id": customer,
        "path_prefix": "/apps/popsync",
        "timestamp": str(int(time.time()) + skew),
    }
    message = "".join(sorted(f"{k}={v}" for k, v in params.items()))
    params["signature"] = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return urlencode(params)


def post(client: FlaskClient, query: str, body: Any, forwarded_for: str = "198.51.100.5") -> Any:
    return client.post(
        f"/proxy/submissions?{query}",
        json=body,
        headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Host": SHOP},
    )


def rows(db: Database, model: type) -> list[Any]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(model)))


def test_a_signed_submission_is_accepted(client: FlaskClient, db: Database, shop: Shop) -> None:
    response = post(client, signed_query(), {"email": "ann@example.com", "email_consent": True})
    assert response.status_code == 200
    assert response.json == {"ok": True}
    [contact] = rows(db, Contact)
    assert (contact.shop_id, contact.email, contact.email_consent) == (
        shop.id,
        "ann@example.com",
        "subscribed",
    )
    [event] = rows(db, ContactEvent)
    assert event.data["client_ip"] == "198.51.100.5"


def test_a_shop_in_the_body_is_ignored(app: Flask, client: FlaskClient, db: Database, shop: Shop) -> None:
    other = add_shop(app, "other.myshopify.com")
    assert post(client, signed_query(), {"shop": other.domain, "email": "ann@example.com"}).json == {
        "ok": True
    }
    assert [c.shop_id for c in rows(db, Contact)] == [shop.id]


@pytest.mark.parametrize(
    "make_query",
    [
        pytest.param(lambda: signed_query("forged-secret"), id="forged"),
        pytest.param(lambda: signed_query(skew=-91), id="stale"),
        pytest.param(lambda: signed_query(skew=91), id="future"),
        pytest.param(lambda: signed_query().rsplit("&signature=", 1)[0], id="missing-signature"),
        pytest.param(lambda: signed_query().replace("timestamp=", "timestamp=1"), id="tampered-timestamp"),
        pytest.param(
            lambda: signed_query().replace("demo.myshopify.com", "other.myshopify.com"), id="tampered-shop"
        ),
        pytest.param(lambda: "", id="nothing"),
    ],
)
def test_a_bad_or_stale_signature_is_401_and_writes_nothing(
    client: FlaskClient, db: Database, shop: Shop, make_query: Callable[[], str]
) -> None:
    query = make_query()
    response = post(client, query, {"email": "ann@example.com"})
    assert response.status_code == 401
    assert response.json["ok"] is False
    for model in (Contact, ContactEvent, OutboxItem, RateLimitCounter):
        assert rows(db, model) == []


@pytest.mark.parametrize("app_extra", [{"SHOPIFY_API_SECRET_PREVIOUS": "old-secret"}], indirect=True)
def test_the_previous_secret_is_accepted_while_rotating(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    assert post(client, signed_query("old-secret"), {"email": "ann@example.com"}).status_code == 200
    assert post(client, signed_query("older-secret"), {"email": "bo@example.com"}).status_code == 401


def test_a_logged_in_customer_with_no_email_is_identified_by_the_worker(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    response = post(client, signed_query(customer="42"), {"first_name": "Ann", "country": "US"})
    assert response.json == {"ok": True}
    assert rows(db, Contact) == []
    [job] = rows(db, OutboxItem)
    assert job.kind == "identify_customer"
    assert job.payload["customer_id"] == "gid://shopify/Customer/42"
    assert job.payload["values"] == {"first_name": "Ann", "country": "US"}
    assert job.payload["evidence"]["client_ip"] == "198.51.100.5"


def test_with_an_email_the_customer_id_is_not_used(client: FlaskClient, db: Database, shop: Shop) -> None:
    post(client, signed_query(customer="42"), {"email": "ann@example.com"})
    [contact] = rows(db, Contact)
    assert contact.platform_customer_id is None
    assert [job.kind for job in rows(db, OutboxItem)] == ["push_contact"]


def test_an_unsigned_customer_id_in_the_body_identifies_no_one(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    post(client, signed_query(), {"first_name": "Ann", "logged_in_customer_id": "42", "customer_id": "42"})
    assert rows(db, OutboxItem) == []


def test_the_same_answers_as_the_storefront(
    app: Flask, client: FlaskClient, db: Database, shop: Shop
) -> None:
    assert post(client, signed_query(), {"email": "nope"}).status_code == 422
    assert post(client, signed_query(), {"email": "nope"}).json["errors"].keys() == {"email"}
    bad_json = client.post(
        f"/proxy/submissions?{signed_query()}", data=b"[1]", content_type="application/json"
    )
    assert bad_json.status_code == 400
    big = post(client, signed_query(), {"email": "a@example.com", "padding": "x" * 70_000})
    assert big.status_code == 413
    assert (
        post(client, signed_query(shop="nope.myshopify.com"), {"email": "a@example.com"}).status_code == 404
    )
    assert post(client, signed_query(), {"email": "bot@example.com", "website": "spam"}).json == {"ok": True}
    assert rows(db, Contact) == []


def test_an_uninstalled_shop_is_404(client: FlaskClient, db: Database, shop: Shop) -> None:
    with db.write_transaction() as session:
        session.get(Shop, shop.id).uninstalled_at = sa.func.now()  # type: ignore[union-attr]
    assert post(client, signed_query(), {"email": "a@example.com"}).status_code == 404


@pytest.mark.parametrize("app_extra", [{"SUBMISSION_RATE_LIMIT": "2/minute"}], indirect=True)
def test_the_client_is_the_address_shopify_appended(client: FlaskClient, db: Database, shop: Shop) -> None:
    # Whatever the browser put in X-Forwarded-For itself, Shopify's entry is the last one.
    statuses = [
        post(client, signed_query(), {"email": "a@example.com"}, f"10.0.0.{i}, 198.51.100.5").status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert post(client, signed_query(), {"email": "a@example.com"}, "198.51.100.6").status_code == 200


@pytest.mark.parametrize(
    "app_extra", [{"SUBMISSION_RATE_LIMIT": "2/minute", "PROXY_COUNT": "1"}], indirect=True
)
def test_behind_our_own_proxy_shopifys_entry_is_one_further_left(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    for i in range(2):
        post(client, signed_query(), {"email": "a@example.com"}, f"10.0.0.{i}, 198.51.100.5, 23.227.38.{i}")
    refused = post(client, signed_query(), {"email": "a@example.com"}, "9.9.9.9, 198.51.100.5, 23.227.38.9")
    assert refused.status_code == 429
    assert {e.data["client_ip"] for e in rows(db, ContactEvent)} == {"198.51.100.5"}
