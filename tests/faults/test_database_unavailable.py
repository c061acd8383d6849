"""A database that does not answer is a 503 with Retry-After on every route (JSON on machine-facing ones),
never a 500 or a traceback. The restart itself, with submissions in flight: test_postgresql_restart.py."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from app import create_app
from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import seal_session
from app.db import utcnow
from app.models import Shop
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from tests.conftest import app_config

pytestmark = pytest.mark.nodb

# Nothing listens on port 1: every connection is refused at once.
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/popsync"


@pytest.fixture
def client() -> FlaskClient:
    return create_app(app_config(UNREACHABLE)).test_client()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/storefront/submissions", {"shop": "demo.myshopify.com", "email": "ann@example.com"}),
        ("get", "/storefront/forms?shop=demo.myshopify.com", None),
        ("get", "/api/v1/contacts", None),
    ],
)
def test_machine_routes_answer_503_json_with_retry_after(
    client: FlaskClient, method: str, path: str, body: dict[str, str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": "Bearer psk_" + "x" * 43} if path.startswith("/api/") else {}
    with caplog.at_level(logging.WARNING, logger="popsync.errors"):
        response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0
    assert response.json == {"ok": False, "error": "the database is unavailable just now; try again shortly"}
    # Logged as an outage, with the error's class only: no statement, no parameters, no traceback.
    [record] = [r for r in caplog.records if r.name == "popsync.errors"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "ann@example.com" not in record.getMessage()
    assert "OperationalError" in record.getMessage()


def test_admin_pages_answer_503_with_retry_after(client: FlaskClient) -> None:
    # A merchant with a valid admin session: the page must look the shop up, and cannot.
    keyring = client.application.extensions["popsync.keyring"]
    shop = Shop(id=1, platform="shopline", domain="demo.myshopline.com")
    client.set_cookie(COOKIE_NAME, seal_session(keyring, shop, utcnow()))
    response = client.get("/admin/contacts")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.mimetype == "text/html"
    assert "Traceback" not in response.get_data(as_text=True)


def test_an_error_on_a_tokens_page_logs_its_route_never_its_token(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.tracking import views

    def broken(link: TrackingLink) -> str:
        raise RuntimeError("a defect")

    monkeypatch.setattr(views, "_masked", broken)
    keyring = client.application.extensions["popsync.keyring"]
    token = seal(keyring, TrackingLink(1, "email", "m-1", utcnow(), email="ann@example.com"))
    with caplog.at_level(logging.WARNING, logger="popsync.errors"):
        response = client.get(f"/u/{token}")
    assert response.status_code == 500
    [record] = [r for r in caplog.records if r.name == "popsync.errors"]
    assert record.getMessage() == "unhandled error on GET /u/<token>"
    assert token not in caplog.text
