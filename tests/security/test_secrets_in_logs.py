"""Secrets and tokens never reach a log line, whatever the level.

One full flow against the development store over real HTTP (the real Shopify clients): the embedded app
home installs the shop by token exchange, the merchant uses the API with a ``psk_`` key and the pages with
a session cookie, a signed webhook arrives, a shopper submits the popup, the worker refreshes the expiring
token and pushes the contact, a tracking link is minted, opened and clicked, the app proxy is used. Every
logger runs at DEBUG (the app's, SQLAlchemy's, httpx/httpcore's, urllib3's, werkzeug's, gunicorn's), and
the captured text (messages, arguments, extra fields, tracebacks) is searched for every secret involved.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import Flask

from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import seal_session
from app.contacts.service import ContactService
from app.db import get_database
from app.db import utcnow
from app.jobs import Worker
from app.models import Contact
from app.models import Shop
from app.platforms.devstore import DevStore
from app.shops import TOKEN_PURPOSE
from app.storefront.proxy import proxy_message
from tests.conftest import TEST_SECRET_KEY
from tests.conftest import add_api_key
from tests.functional.test_shopify_install import shopify_app
from tests.integration.test_shopify_tokens import Clock as StoreClock
from tests.integration.test_shopify_tokens import running_store
from tests.security.conftest import SHOPIFY_KEY
from tests.security.conftest import SHOPIFY_SECRET
from tests.security.conftest import SHOPLINE_SECRET
from tests.security.conftest import session_token

DOMAIN = "logs-shop.myshopify.com"
LOGGERS = (
    "",
    "popsync",
    "app",
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "alembic",
    "httpx",
    "httpcore",
    "urllib3",
    "requests",
    "werkzeug",
    "flask.app",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
    "shopify_app",
)


class WorkerClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> object:
        return self.now


@pytest.fixture
def store() -> DevStore:
    return DevStore(webhook_secrets={"shopify": SHOPIFY_SECRET}, clock=StoreClock())


@pytest.fixture
def origin(store: DevStore) -> Iterator[str]:
    with running_store(store) as origin:
        yield origin


@pytest.fixture
def debug_everywhere(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, before the test's database connection exists (SQLAlchemy decides whether a
    connection logs its statements when it is opened)."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def app(
    debug_everywhere: pytest.LogCaptureFixture,
    engine: sa.Engine,
    connection: sa.Connection,
    origin: str,
    tmp_path: object,
) -> Flask:
    return shopify_app(
        engine,
        connection,
        SHOPIFY_API_KEY=SHOPIFY_KEY,
        SHOPIFY_API_SECRET=SHOPIFY_SECRET,
        SHOPLINE_APP_KEY="logs-shopline-key",
        SHOPLINE_APP_SECRET=SHOPLINE_SECRET,
        SHOPIFY_ADMIN_ORIGIN=origin,
        POPSYNC_INSTANCE_PATH=str(tmp_path),
    )


def popsyncs_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of popsync's process, not of the development store: the store plays the platform (it
    keeps tokens in plain text, as Shopify does) and serves each request in a thread of its own server."""
    return [record for record in caplog.records if "process_request_thread" not in record.threadName]


def _row_echo(record: logging.LogRecord) -> bool:
    """SQLAlchemy's DEBUG echo of result rows: the database's content as it is stored."""
    return record.name.startswith("sqlalchemy.engine") and str(record.msg).startswith(("Row ", "Col "))


def everything_logged(caplog: pytest.LogCaptureFixture, *, with_rows: bool = True) -> str:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    parts = []
    for record in popsyncs_records(caplog):
        if not with_rows and _row_echo(record):
            continue
        parts.append(handler.format(record))
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(repr({k: v for k, v in record.__dict__.items() if k not in ("args", "msg")}))
    return "\n".join(parts)


def tokens_of(app: Flask) -> list[str]:
    keyring = app.extensions["popsync.keyring"]
    with get_database(app).sessionmaker() as session:
        shop = session.scalar(sa.select(Shop).where(Shop.domain == DOMAIN))
        assert shop is not None
        assert shop.access_token is not None
        found = [keyring.open_text(TOKEN_PURPOSE, shop.access_token)]
        if shop.refresh_token:
            found.append(keyring.open_text(TOKEN_PURPOSE, shop.refresh_token))
        return found


@pytest.mark.slow
def test_a_full_flow_logs_no_secret(
    app: Flask, store: DevStore, service: ContactService, caplog: pytest.LogCaptureFixture
) -> None:
    for name in LOGGERS:  # again: create_app sets the app's own logger to INFO
        caplog.set_level(logging.DEBUG, logger=name)
    client = app.test_client()
    db = get_database(app)
    secrets: dict[str, str] = {
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPLINE_APP_SECRET": SHOPLINE_SECRET,
        "SECRET_KEY": TEST_SECRET_KEY,
    }

    # Install by token exchange from the embedded app home.
    id_token = session_token(DOMAIN)
    secrets["id_token signature"] = id_token.rsplit(".", 1)[1]
    home = client.get(f"/?shop={DOMAIN}&host=aG9zdA&embedded=1&id_token={id_token}")
    assert home.status_code == 200, home.get_data(as_text=True)[:200]
    first_tokens = tokens_of(app)
    assert len(first_tokens) == 2, "the exchanged token is expiring: it has a refresh token"
    secrets |= {f"token {n}": value for n, value in enumerate(first_tokens)}

    # The merchant: a psk_ key on the API, the session cookie on the pages.
    with db.sessionmaker() as session:
        shop = session.scalar(sa.select(Shop).where(Shop.domain == DOMAIN))
    assert shop is not None
    api_key = add_api_key(app, shop)
    secrets["psk_ key"] = api_key
    auth = {"Authorization": f"Bearer {api_key}"}
    assert client.get("/api/v1/contacts?q=ann", headers=auth).status_code == 200
    with app.app_context():
        cookie = seal_session(app.extensions["popsync.keyring"], shop, utcnow())
    secrets["session cookie"] = cookie
    client.set_cookie(COOKIE_NAME, cookie)
    assert client.get("/admin/contacts").status_code == 200
    client.delete_cookie(COOKIE_NAME)
    assert client.get("/api/v1/contacts", headers={"Authorization": "Bearer psk_wrong"}).status_code == 401

    # A signed webhook (and a forged one).
    body = json.dumps({"id": 5, "email": "wh@example.com", "updated_at": "2030-01-01T00:00:00Z"}).encode()
    signature = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    secrets["webhook signature"] = signature
    for given in (signature, signature[:-4] + "AAAA"):
        client.post(
            "/webhooks/shopify",
            data=body,
            content_type="application/json",
            headers={
                "X-Shopify-Hmac-Sha256": given,
                "X-Shopify-Topic": "customers/create",
                "X-Shopify-Shop-Domain": DOMAIN,
                "X-Shopify-Webhook-Id": f"logs-{given[-4:]}",
            },
        )

    # A shopper: the popup directly and through the app proxy.
    assert client.post(
        "/storefront/submissions", json={"shop": DOMAIN, "email": "ann@example.com", "first_name": "Ann"}
    ).get_json() == {"ok": True}
    pairs = [("shop", DOMAIN), ("timestamp", str(int(time.time())))]
    proxy_signature = hmac.new(
        SHOPIFY_SECRET.encode(), proxy_message(pairs).encode(), hashlib.sha256
    ).hexdigest()
    secrets["proxy signature"] = proxy_signature
    proxied = client.post(
        f"/proxy/submissions?{urlencode([*pairs, ('signature', proxy_signature)])}",
        json={"email": "bob@example.com"},
    )
    assert proxied.status_code == 200, proxied.get_json()

    # A tracking link, minted, opened and clicked.
    minted = client.post(
        "/api/v1/tracking-links",
        json={
            "channel": "email",
            "email": "cy@example.com",
            "message_id": "m1",
            "url": "https://shop.example/",
        },
        headers=auth,
    )
    assert minted.status_code == 201, minted.get_json()
    click_token = minted.json["click_url"].rsplit("/", 1)[1]
    # A sealed value the database keeps to count the hit: it shows in SQLAlchemy's echo of result rows (the
    # database's content), nowhere else.
    sealed_in_database = {"tracking token": click_token}
    client.get(minted.json["open_url"].replace("http://popsync.test", ""))
    assert client.get(f"/t/c/{click_token}").status_code == 302

    # The worker, near the token's expiry: it refreshes the token, then pushes the contacts.
    clock = WorkerClock()
    with db.sessionmaker() as session:
        expires = session.scalar(sa.select(Shop.access_token_expires_at).where(Shop.domain == DOMAIN))
    assert expires is not None
    clock.now = expires - timedelta(minutes=1)
    worker = Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        clock=clock,
        rng=random.Random(1),
    )
    for _ in range(50):
        if not worker.run_once():
            wait = worker.seconds_until_due()
            if wait is None:
                break
            clock.now += timedelta(seconds=wait + 0.01)
    refreshed = tokens_of(app)
    assert refreshed[0] != first_tokens[0], "the worker refreshed the expiring token"
    secrets |= {f"refreshed token {n}": value for n, value in enumerate(refreshed)}
    with db.sessionmaker() as session:
        synced = set(
            session.scalars(sa.select(Contact.sync_status).where(Contact.email == "ann@example.com"))
        )
    assert synced == {"synced"}

    logged = everything_logged(caplog)
    captured = {record.name.split(".")[0] for record in popsyncs_records(caplog)}
    assert {"sqlalchemy", "httpcore", "urllib3", "popsync"} <= captured, captured
    leaked = sorted(name for name, value in secrets.items() if value and value in logged)
    without_rows = everything_logged(caplog, with_rows=False)
    leaked += sorted(name for name, value in sealed_in_database.items() if value in without_rows)
    assert leaked == []
