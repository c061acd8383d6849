"""Open redirects: tracked click links and the return path of the embedded admin's auth flow.

A click link redirects only to the http(s) URL sealed in its token: a forged, altered, truncated token, one
sealed with another install's key, or one whose sealed URL is not http(s), is a 404 with no Location.
``javascript:``, ``data:``, protocol-relative and backslash targets are refused when a link is made (422
naming ``url``) and, should one ever be sealed, again before the redirect. The embedded admin's
``shopify-reload`` (where App Bridge navigates after fetching a fresh session token) is only ever a path
of this app.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.shopify import is_local_path
from app.crypto import Keyring
from app.db import utcnow
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from tests.security.conftest import Tenant

LANDING = "https://shop.example/landing?a=1"
HOSTILE_TARGETS = [
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "javascript://shop.example/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example",
    "///evil.example",
    "\\\\evil.example",
    "/\\evil.example",
    "https:evil.example",
    "https:/evil.example",
    "http:\\\\evil.example",
    "https://evil.example\\@shop.example",
    "https://shop.example/\r\nSet-Cookie: x=1",
    "ftp://evil.example",
    "/relative/path",
    "evil.example",
    "https://",
    "https://:443",
]


def click_token(app: Flask, tenant: Tenant, url: str | None, keyring: Keyring | None = None) -> str:
    link = TrackingLink(tenant.shop.id, "email", "m-1", utcnow(), email="ann@example.com", url=url)
    return seal(keyring or app.extensions["popsync.keyring"], link)


def assert_dead_end(answer: Any) -> None:
    assert answer.status_code == 404
    assert "Location" not in answer.headers
    assert "evil" not in answer.get_data(as_text=True)


def test_a_genuine_click_goes_to_its_sealed_url(app: Flask, client: FlaskClient, mallory: Tenant) -> None:
    answer = client.get(f"/t/c/{click_token(app, mallory, LANDING)}")
    assert answer.status_code == 302
    assert answer.headers["Location"] == LANDING


def test_hostile_targets_are_refused_when_a_link_is_made(client: FlaskClient, mallory: Tenant) -> None:
    for target in HOSTILE_TARGETS:
        answer = client.post(
            "/api/v1/tracking-links",
            json={"channel": "email", "email": "ann@example.com", "message_id": "m-1", "url": target},
            headers=mallory.key_auth,
        )
        assert answer.status_code == 422, (target, answer.get_json())
        assert list(answer.json["errors"]) == ["url"], target


def test_hostile_targets_sealed_anyway_never_redirect(
    app: Flask, client: FlaskClient, mallory: Tenant
) -> None:
    """A token is only as good as the URL check at redirect time: if a bug ever sealed one of these, the
    click still leads nowhere."""
    for target in HOSTILE_TARGETS:
        assert_dead_end(client.get(f"/t/c/{click_token(app, mallory, target)}"))


def test_tokens_from_another_install_or_tampered_lead_nowhere(
    app: Flask, client: FlaskClient, mallory: Tenant
) -> None:
    other_install = Keyring("another-popsync-install-secret-key-0123456789", ())
    assert_dead_end(client.get(f"/t/c/{click_token(app, mallory, 'https://evil.example/', other_install)}"))
    genuine = click_token(app, mallory, "https://evil.example/")  # sealed with this app's key
    for forged in (
        genuine[:-1] + ("A" if genuine[-1] != "A" else "B"),
        genuine[:20],
        genuine + "A",
        genuine[::-1],
        "A" * len(genuine),
        genuine.replace("-", "+").replace("_", "/"),
    ):
        if forged == genuine:
            continue  # a token without "-" or "_" (about one in 33) has no other base64 spelling
        assert_dead_end(client.get(f"/t/c/{forged}"))
    # A token is not a URL: extra path or query never changes where it leads.
    answer = client.get(f"/t/c/{genuine}?url=https://elsewhere.example&next=//elsewhere.example")
    assert answer.headers["Location"] == "https://evil.example/"


RETURN_PATHS_REFUSED = [
    "//evil.example",
    "/\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\t\\evil.example",
    "\t//evil.example",
    "\\/evil.example",
    "https://evil.example/admin",
    "javascript:alert(1)",
    "evil.example",
    "",
    "/admin\\..\\\\evil.example",
]


@pytest.mark.nodb
@pytest.mark.parametrize("path", RETURN_PATHS_REFUSED)
def test_a_return_path_that_leaves_the_origin_is_not_local(path: str) -> None:
    assert not is_local_path(path)


@pytest.mark.nodb
@pytest.mark.parametrize("path", ["/", "/admin", "/admin/contacts?q=a%2F%2Fb", "/admin/forms/7?shop=x"])
def test_paths_of_this_app_are_local(path: str) -> None:
    assert is_local_path(path)


def test_the_patch_id_token_page_refuses_a_foreign_return_path(client: FlaskClient) -> None:
    for path in RETURN_PATHS_REFUSED:
        query = urlencode({"shop": "mallory.myshopify.com", "shopify-reload": path})
        answer = client.get(f"/auth/patch-id-token?{query}")
        assert answer.status_code == 400, path
        assert "Location" not in answer.headers


def test_the_patch_id_token_page_serves_app_bridge_for_a_local_path(client: FlaskClient) -> None:
    answer = client.get("/auth/patch-id-token?shop=mallory.myshopify.com&shopify-reload=%2Fadmin%2Fcontacts")
    assert answer.status_code == 200
    assert "app-bridge.js" in answer.get_data(as_text=True)
