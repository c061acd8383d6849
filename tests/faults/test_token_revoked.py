"""The platform refuses popsync's access token (401 on Shopify's Admin GraphQL and SHOPLINE's REST API).

- An expiring Shopify token is refreshed with its refresh token and the write goes on (SHOPLINE's refresh
  after a refusal: tests/integration/test_platform_writes.py).
- A token that cannot be refreshed marks the shop as needing re-authorisation: the merchant sees it (the
  admin pages' banner with the link, ``GET /api/v1/shop``), submissions are still accepted, no write is
  lost, and once the token is back (the Shopify app home's token exchange, ``popsync shops add``) every
  change reaches the platform exactly once, including writes whose answer was lost before the refusal.

Real commits on a fresh database, the development store over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from app.cli import shops_group
from app.db import get_database
from app.models import Contact
from app.models import Shop
from app.platforms.devstore import DevStore
from app.shops import access_token
from app.shops import create_api_key
from tests.devstore_server import RunningDevStore
from tests.devstore_server import running_devstore
from tests.functional.test_openapi import check
from tests.functional.test_openapi import description
from tests.integration.test_platform_writes import DOMAINS
from tests.integration.test_platform_writes import TOKENS
from tests.integration.test_platform_writes import add_shops
from tests.integration.test_platform_writes import assert_each_contact_once
from tests.integration.test_platform_writes import make_app
from tests.integration.test_platform_writes import platform_customers
from tests.integration.test_platform_writes import seed_contacts
from tests.integration.test_platform_writes import worker_for
from tests.unit.test_session_tokens import API_KEY
from tests.unit.test_session_tokens import SECRET
from tests.unit.test_session_tokens import make_session_token

pytestmark = pytest.mark.slow

SHOPLINE_SECRET = "shopline-app-secret-for-faults"
REVOKED = {"shopify": "shpat_granted_to_someone_else", "shopline": "sl-granted-to-someone-else"}


@pytest.fixture(autouse=True)
def quick_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restored token starts a backfill (a Shopify bulk export): poll it at once, not every 5 s."""
    import app.pulls

    monkeypatch.setattr(app.pulls, "BULK_POLL_SECONDS", 0.05)


@pytest.fixture
def devstore() -> Iterator[RunningDevStore]:
    store = DevStore(
        seed=5,
        webhook_secrets={"shopify": SECRET, "shopline": SHOPLINE_SECRET},
        shopify_restore_rate=100_000,
        shopify_bucket_size=1_000_000,
        shopline_rate=100_000,
        shopline_bucket_size=1_000_000,
    )
    for platform, domain in DOMAINS.items():
        store.add_shop(platform, domain, TOKENS[platform])
    with running_devstore(store) as running:
        yield running


def shop_row(app: Flask, shop_id: int) -> Shop:
    with get_database(app).sessionmaker() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        return shop


def statuses(app: Flask, shop_id: int) -> dict[str, int]:
    with get_database(app).sessionmaker() as session:
        rows = session.execute(
            sa.select(Contact.sync_status, sa.func.count())
            .where(Contact.shop_id == shop_id)
            .group_by(Contact.sync_status)
        )
        return {status: int(n) for status, n in rows}


def api_key(app: Flask, shop_id: int) -> dict[str, str]:
    with get_database(app).write_transaction() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        return {"Authorization": f"Bearer {create_api_key(session, shop)}"}


def merchant_sees(app: Flask, shop_id: int, platform: str) -> dict[str, Any]:
    """What the merchant is shown: the API's shop status, and whether the admin page carries the banner
    (the Shopify embedded page with a session token; SHOPLINE's with its signed session cookie)."""
    client = app.test_client()
    status = client.get("/api/v1/shop", headers=api_key(app, shop_id))
    assert status.status_code == 200
    check(description(client), "/api/v1/shop", "get", 200, status.json)
    if platform == "shopify":
        page = client.get("/admin", query_string={"id_token": make_session_token(DOMAINS["shopify"])})
    else:
        from app.auth.admin_session import COOKIE_NAME
        from app.auth.admin_session import seal_session
        from app.db import utcnow

        keyring = app.extensions["popsync.keyring"]
        client.set_cookie(COOKIE_NAME, seal_session(keyring, shop_row(app, shop_id), utcnow()))
        page = client.get("/admin")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return {"status": status.json, "banner": 'data-testid="reauth-banner"' in html, "html": html}


def test_a_refused_expiring_shopify_token_is_refreshed_and_the_write_goes_on(
    fresh_database: sa.Engine, devstore: RunningDevStore
) -> None:
    app = make_app(fresh_database, devstore, SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET)
    # An expiring offline token with its refresh token, as the install grants it.
    granted = requests.post(
        f"{devstore.origin}/admin/oauth/access_token",
        data={"client_id": API_KEY, "client_secret": SECRET, "code": "c", "expiring": "1"},
        headers={"X-Forwarded-Host": DOMAINS["shopify"]},
        timeout=10,
    ).json()
    runner = app.test_cli_runner()
    added = runner.invoke(
        shops_group,
        ["add", "--platform", "shopify", "--domain", DOMAINS["shopify"], "--token", granted["access_token"],
         "--refresh-token", granted["refresh_token"], "--region", "US"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    shop_id = shop_row_by_domain(app, DOMAINS["shopify"]).id
    seed_contacts(app, shop_id, 5)
    devstore.store.add_shop("shopify", DOMAINS["shopify"], REVOKED["shopify"])  # the token stops working

    worker_for(app).drain(60)

    assert_each_contact_once(app, devstore.store, "shopify", shop_id, 5)
    shop = shop_row(app, shop_id)
    assert shop.needs_reauth is False
    refreshed = access_token(shop, app.extensions["popsync.keyring"])
    assert refreshed not in (granted["access_token"], REVOKED["shopify"])
    assert devstore.store.shop_for_token("shopify", refreshed or "", DOMAINS["shopify"]) is not None
    assert merchant_sees(app, shop_id, "shopify")["banner"] is False


def shop_row_by_domain(app: Flask, domain: str) -> Shop:
    with get_database(app).sessionmaker() as session:
        shop = session.scalar(sa.select(Shop).where(Shop.domain == domain))
        assert shop is not None
        return shop


@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_a_revoked_token_parks_the_writes_the_merchant_sees_it_and_they_land_once_it_is_back(
    fresh_database: sa.Engine, devstore: RunningDevStore, platform: str
) -> None:
    # Shopify: a custom app's token (no refresh token). SHOPLINE: the refresh is refused too (a secret the
    # store does not accept), as after the merchant removed the app's access.
    app = make_app(
        fresh_database,
        devstore,
        SHOPIFY_API_KEY=API_KEY,
        SHOPIFY_API_SECRET=SECRET,
        SHOPLINE_APP_KEY="popsync-test",
        SHOPLINE_APP_SECRET="not-the-secret-the-store-knows",
    )
    shop_id = add_shops(app)[platform]
    count = 8
    seed_contacts(app, shop_id, count)
    worker = worker_for(app)

    # Answers get lost for a while: some customers are created without popsync hearing of it.
    devstore.store.faults.configure(lost_answer=0.5)
    for _ in range(6):
        worker.run_once()
    devstore.store.faults.configure(lost_answer=0)
    on_platform_before = len(platform_customers(devstore.store, platform))
    assert 0 < on_platform_before < count

    # The platform stops accepting the token; the outbox drains into the refusal.
    devstore.store.add_shop(platform, DOMAINS[platform], REVOKED[platform])
    worker.drain(60)
    assert shop_row(app, shop_id).needs_reauth is True
    # A shopper submits meanwhile: accepted, stored, its write waits with the others.
    client = app.test_client()
    late = client.post(
        "/storefront/submissions", json={"shop": DOMAINS[platform], "email": "late@example.com"}
    )
    assert late.status_code == 200
    worker.drain(60)
    assert len(platform_customers(devstore.store, platform)) == on_platform_before  # nothing went through
    waiting = statuses(app, shop_id)
    assert waiting.get("synced", 0) + waiting.get("failed", 0) == count + 1
    assert waiting.get("failed", 0) >= count + 1 - on_platform_before

    seen = merchant_sees(app, shop_id, platform)
    assert seen["banner"] is True
    assert seen["status"]["needs_reauth"] is True
    assert "authorise" in seen["status"]["detail"]
    if platform == "shopify":
        assert (
            seen["status"]["reauthorize_url"] == f"http://popsync.test/auth/shopify?shop={DOMAINS[platform]}"
        )
        assert 'href="http://popsync.test/auth/shopify?shop=' in seen["html"]
    else:
        assert seen["status"]["reauthorize_url"] == f"https://{DOMAINS[platform]}/admin"
    shown = json.dumps(seen["status"])
    assert TOKENS[platform] not in shown
    assert REVOKED[platform] not in shown

    # The token comes back: Shopify by the app home's token exchange when the merchant opens popsync,
    # SHOPLINE by `popsync shops add` with the token the store now holds.
    if platform == "shopify":
        home = client.get(
            "/", query_string={"shop": DOMAINS[platform], "id_token": make_session_token(DOMAINS[platform])}
        )
        assert home.status_code == 200
        assert 'data-testid="reauth-banner"' not in home.get_data(as_text=True)
    else:
        restored = app.test_cli_runner().invoke(
            shops_group,
            ["add", "--platform", "shopline", "--domain", DOMAINS[platform], "--token", REVOKED[platform]],
        )
        assert restored.exit_code == 0, restored.output
    assert shop_row(app, shop_id).needs_reauth is False

    worker.drain(60)
    assert_each_contact_once(app, devstore.store, platform, shop_id, count + 1)
    after = merchant_sees(app, shop_id, platform)
    assert after["banner"] is False
    assert after["status"]["needs_reauth"] is False
    assert after["status"]["reauthorize_url"] is None
