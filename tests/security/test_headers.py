"""Security headers on the admin pages and the admin API.

- Embedded pages (inside the Shopify admin): framed only by the shop's admin and admin.shopify.com.
- Standalone pages (SHOPLINE, the demo): framed by nobody.
- Both: no inline script may run (CSP), no type sniffing, no referrer beyond this origin, and pages and
  API answers with personal data are never cached.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import seal_session
from app.db import utcnow
from tests.security.conftest import Tenant
from tests.security.conftest import session_token

PAGES = [
    "/admin",
    "/admin/contacts",
    "/admin/segments",
    "/admin/segments/new",
    "/admin/import",
    "/admin/export",
    "/admin/forms",
    "/admin/forms/new",
    "/admin/embed",
]


def csp(response: TestResponse) -> dict[str, list[str]]:
    """The Content-Security-Policy as directive -> sources."""
    header = response.headers.get("Content-Security-Policy", "")
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def assert_no_inline_script(policy: dict[str, list[str]]) -> None:
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts is not None, "no script-src or default-src: inline scripts would run"
    assert "'unsafe-inline'" not in scripts
    assert "'unsafe-eval'" not in scripts
    assert "*" not in scripts
    assert not any(
        source.startswith(("http:", "data:", "https:")) and source.endswith(":") for source in scripts
    )
    assert policy.get("object-src", policy.get("default-src")) in (["'none'"], ["'self'"])


def assert_private_page(response: TestResponse) -> None:
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin")
    assert "no-store" in response.headers.get("Cache-Control", "")


def sign_in(app: Flask, client: FlaskClient, tenant: Tenant) -> None:
    with app.app_context():
        client.set_cookie(COOKIE_NAME, seal_session(app.extensions["popsync.keyring"], tenant.shop, utcnow()))


def test_standalone_pages_are_framed_by_nobody(app: Flask, client: FlaskClient, mallory: Tenant) -> None:
    sign_in(app, client, mallory)
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, path
        policy = csp(page)
        assert policy["frame-ancestors"] == ["'none'"], path
        assert_no_inline_script(policy)
        assert_private_page(page)


def test_embedded_pages_are_framed_only_by_their_shops_admin(client: FlaskClient, mallory: Tenant) -> None:
    for path in PAGES:
        page = client.get(
            f"{path}?shop={mallory.shop.domain}&host=aG9zdA&id_token={session_token(mallory.shop.domain)}"
        )
        assert page.status_code == 200, path
        policy = csp(page)
        assert sorted(policy["frame-ancestors"]) == sorted(
            [f"https://{mallory.shop.domain}", "https://admin.shopify.com"]
        ), path
        assert_no_inline_script(policy)
        assert_private_page(page)


def test_the_embedded_app_home_keeps_the_strict_policy(client: FlaskClient, mallory: Tenant) -> None:
    """The app home is the dashboard: the page's own policy, not only the library's frame-ancestors."""
    home = client.get(
        f"/?shop={mallory.shop.domain}&embedded=1&id_token={session_token(mallory.shop.domain)}"
    )
    assert home.status_code == 200
    policy = csp(home)
    assert sorted(policy["frame-ancestors"]) == sorted(
        [f"https://{mallory.shop.domain}", "https://admin.shopify.com"]
    )
    assert_no_inline_script(policy)
    assert_private_page(home)


def test_pages_have_no_inline_script_to_allow(app: Flask, client: FlaskClient, mallory: Tenant) -> None:
    """The policy costs nothing only while the pages keep to it: no inline script, no handler attribute."""
    sign_in(app, client, mallory)
    for path in [*PAGES, "/admin/forms/preview"]:
        html = client.get(path).get_data(as_text=True)
        for script in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.DOTALL):
            attributes, body = script
            assert "src=" in attributes or 'type="application/json"' in attributes, (path, attributes)
            assert "src=" not in attributes or not body.strip(), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert "javascript:" not in html.lower(), path


def test_the_sign_in_page_and_errors_are_private_too(
    client: FlaskClient, app: Flask, mallory: Tenant
) -> None:
    refused = client.get("/admin/contacts")
    assert refused.status_code == 401
    assert csp(refused)["frame-ancestors"] == ["'none'"]
    assert_private_page(refused)
    sign_in(app, client, mallory)
    missing = client.get("/admin/contacts/999999999")
    assert missing.status_code == 404
    assert missing.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(
    "path", ["/api/v1/contacts", "/api/v1/contacts/export.csv", "/api/v1/forms", "/api/v1/data-requests"]
)
def test_api_answers_with_personal_data_are_not_cached(
    client: FlaskClient, mallory: Tenant, path: str
) -> None:
    answer = client.get(path, headers=mallory.key_auth)
    assert answer.status_code == 200
    assert "no-store" in answer.headers.get("Cache-Control", "")
    assert answer.headers.get("X-Content-Type-Options") == "nosniff"


def test_the_form_preview_is_framed_only_by_popsync_and_shopify(client: FlaskClient) -> None:
    preview = client.get("/admin/forms/preview")
    ancestors = csp(preview)["frame-ancestors"]
    assert "'self'" in ancestors
    assert all(
        source in ("'self'", "https://admin.shopify.com", "https://*.myshopify.com") for source in ancestors
    )
