"""Stored and reflected XSS in what the server renders: the admin pages (Jinja, autoescaped) and the
unsubscribe page. What the pages' scripts and the popup render is tested in a browser (in
tests/browser/test_stored_xss.py); here, every page rendered with hostile data shows it escaped, and its
policy forbids inline script in any case (test_headers.py).
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import seal_session
from app.db import Database
from app.db import utcnow
from app.models import Shop
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from tests.security.conftest import Tenant
from tests.security.conftest import session_token

PAYLOADS = [
    '"><script>window.__xss=1</script>',
    "'><img src=x onerror=window.__xss=1>",
    "</title><svg onload=window.__xss=1>",
    "javascript:window.__xss=1",
    "{{7*7}}{% raw %}",
]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def assert_inert(html: str, payload: str) -> None:
    """The page, parsed as a browser would: no handler attribute, no script but popsync's own files and
    data blocks, no element the payload opened, no ``javascript:`` link, no template evaluated."""
    parser = _Elements()
    parser.feed(html)
    for tag, attrs in parser.elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert not (tag == "img" and attrs.get("src") == "x"), payload
        if tag == "script":
            source = attrs.get("src") or ""
            assert source.startswith(("/admin/static/", "/storefront/", "https://cdn.shopify.com/")) or (
                attrs.get("type") == "application/json"
            ), attrs
        for name in ("href", "src", "action", "formaction"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), (tag, attrs)


def test_reflected_parameters_are_escaped_on_the_pages(
    app: Flask, client: FlaskClient, mallory: Tenant
) -> None:
    with app.app_context():
        client.set_cookie(
            COOKIE_NAME, seal_session(app.extensions["popsync.keyring"], mallory.shop, utcnow())
        )
    for payload in PAYLOADS:
        for path in ("/admin/contacts", "/admin", "/admin/forms", "/admin/segments"):
            query = urlencode({"q": payload, "segment": payload, "channel": payload})
            page = client.get(f"{path}?{query}")
            assert page.status_code == 200
            html = page.get_data(as_text=True)
            assert_inert(html, payload)
            if path == "/admin/contacts":  # the search box keeps the query: as text, and never evaluated
                assert str(escape(payload)) in html


def test_embedded_links_carry_hostile_host_parameters_escaped(client: FlaskClient, mallory: Tenant) -> None:
    for payload in PAYLOADS:
        query = urlencode(
            {"shop": mallory.shop.domain, "host": payload, "id_token": session_token(mallory.shop.domain)}
        )
        page = client.get(f"/admin/contacts?{query}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert_inert(html, payload)
        assert 'href="javascript:' not in html


def test_stored_names_render_as_text_on_the_unsubscribe_page(
    app: Flask, client: FlaskClient, db: Database, mallory: Tenant
) -> None:
    with db.write_transaction() as session:
        session.execute(sa.update(Shop).where(Shop.id == mallory.shop.id).values(name=PAYLOADS[0]))
    link = TrackingLink(
        mallory.shop.id, "email", "m", utcnow(), email="ann@example.com", first_name=PAYLOADS[1]
    )
    page = client.get(f"/u/{seal(app.extensions['popsync.keyring'], link)}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert_inert(html, PAYLOADS[0])
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none' covers it
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_hostile_texts_come_back_as_json_data_never_markup(client: FlaskClient, mallory: Tenant) -> None:
    """What the popup and the pages' scripts receive: JSON with the text as it was typed (they put it in the
    page as text; the browser tests show it)."""
    texts = {"title": PAYLOADS[0], "body": PAYLOADS[1], "submit": PAYLOADS[2]}
    form = client.post(
        "/api/v1/forms",
        json={"name": PAYLOADS[2], "template": "newsletter", "texts": {"en": texts}, "active": True},
        headers=mallory.key_auth,
    )
    assert form.status_code == 201, form.get_json()
    assert form.headers["Content-Type"].startswith("application/json")
    assert form.json["texts"]["en"]["title"] == PAYLOADS[0]
