"""Stored XSS in a real Chromium (the other attacks are in tests/security): hostile form texts in the popup,
hostile contact names (typed in a popup and imported from a CSV) in the admin pages. The payloads render
as text, no script runs, no attribute is broken out of.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from app.contacts.rules import Collected
from app.demo import build_demo
from app.enums import Source
from app.models import Shop
from app.storefront.demo_store import DEMO_SHOP
from tests.browser.conftest import SHOP
from tests.browser.conftest import FakeStorefront
from tests.browser.conftest import free_port
from tests.browser.conftest import wait_until
from tests.conftest import TEST_SECRET_KEY
from tests.conftest import add_api_key
from tests.conftest import add_shop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Each payload, if it ran, would set window.__xss; each is also built to break out of an attribute.
TITLE = '"><img src=x onerror="window.__xss=1">'
BODY = "<script>window.__xss=2</script><b>bold</b>"
SUBMIT = "' onfocus='window.__xss=3' autofocus x='"
LABEL = "</label><svg onload=window.__xss=4>"
CONSENT = '<a href="javascript:window.__xss=5">terms</a>'
SUCCESS = "<iframe src=javascript:window.__xss=6>"
CLOSE = '" onmouseover="window.__xss=7'
NAME = '<img src=x onerror="window.__xss=8">'
LAST = "\"'><script>window.__xss=9</script>"

SHADOW_MARKUP = """() => {
  const host = document.querySelector('[data-popsync]');
  const root = host && host.shadowRoot;
  if (!root) return null;
  const handlers = [...root.querySelectorAll('*')].flatMap(
    (el) => [...el.attributes].filter((a) => a.name.startsWith('on')).map((a) => el.tagName + ' ' + a.name));
  return {
    tags: [...new Set([...root.querySelectorAll('*')].map((el) => el.tagName.toLowerCase()))],
    handlers,
    title: (root.getElementById('ps-t') || {}).textContent,
    text: root.textContent,
    close: root.querySelector('button.x').getAttribute('aria-label'),
  };
}"""


def hostile_forms(client: FlaskClient) -> list[dict[str, Any]]:
    """A form with hostile texts, stored through the real API and read back as the storefront reads it."""
    shop = add_shop(client.application, SHOP)
    auth = {"Authorization": f"Bearer {add_api_key(client.application, shop)}"}
    texts = {
        "title": TITLE,
        "body": BODY,
        "submit": SUBMIT,
        "email_label": LABEL,
        "email_consent": CONSENT,
        "success_title": SUCCESS,
        "success_body": BODY,
        "close": CLOSE,
    }
    created = client.post(
        "/api/v1/forms",
        json={
            "name": "Hostile",
            "template": "email_sms",
            "texts": {"en": texts},
            "trigger": {"type": "delay", "delay_seconds": 0, "frequency_days": 0},
            "discount_code": "<b>CODE</b>",
            "active": True,
        },
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    forms = client.get(f"/storefront/forms?shop={SHOP}").json["forms"]
    assert [form["texts"]["en"]["title"] for form in forms] == [TITLE]
    return forms


def test_hostile_form_texts_render_as_text_in_the_popup(
    client: FlaskClient,
    storefront: FakeStorefront,
    page: Any,
) -> None:
    storefront.forms = hostile_forms(client)
    page.goto(storefront.base_url + "/")
    page.locator("[role=dialog]").wait_for(state="visible")
    shown = page.evaluate(SHADOW_MARKUP)
    assert shown["title"] == TITLE
    assert BODY in shown["text"]
    assert CONSENT in shown["text"]
    assert shown["close"] == CLOSE
    assert shown["handlers"] == []
    assert not {"img", "script", "svg", "iframe", "b", "a"} & set(shown["tags"])
    assert page.get_by_role("button", name=SUBMIT).is_visible()
    page.get_by_label(LABEL).fill("ann@example.com")
    page.get_by_role("button", name=SUBMIT).click()
    wait_until(lambda: storefront.submissions, message="the submission")
    page.wait_for_function(
        "() => document.querySelector('[data-popsync]').shadowRoot.getElementById('ps-t')"
        ".textContent !== " + repr(TITLE)
    )
    shown = page.evaluate(SHADOW_MARKUP)
    assert shown["title"] == SUCCESS
    assert "<b>CODE</b>" in shown["text"]
    assert not {"img", "script", "svg", "iframe", "b", "a"} & set(shown["tags"])
    assert page.evaluate("() => window.__xss") is None


@pytest.fixture(scope="module")
def hostile_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``popsync demo``'s admin with contacts whose names are payloads: one typed in a popup, one imported."""
    folder: Path = tmp_path_factory.mktemp("xss-admin")
    port = free_port()
    env = {
        "POPSYNC_ENV": "development",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite:///{folder / 'popsync.sqlite3'}",
        "POPSYNC_INSTANCE_PATH": str(folder),
    }
    app, _store, api_key, wsgi = build_demo(port, env)
    from app.db import get_database

    with get_database(app).sessionmaker() as session:
        shop_id = session.query(Shop.id).filter(Shop.domain == DEMO_SHOP).scalar()
    result = app.extensions["popsync.contacts"].sync(
        shop_id, Collected(email="xss@example.com", first_name=NAME, last_name=LAST), source=Source.FORM
    )
    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="xss-admin", daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{port}"
    table = io.StringIO()
    csv.writer(table).writerows(
        [("email", "first_name", "last_name", "tags"), ("imported@example.com", NAME, "x", LAST)]
    )
    content = table.getvalue()
    upload = requests.post(
        f"{origin}/api/v1/imports",
        files={"file": ("list.csv", io.BytesIO(content.encode()))},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert upload.status_code == 202, upload.text
    from app.jobs import Worker

    Worker(
        get_database(app),
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        client_factory=lambda shop: None,
    ).run(until_idle=True)
    try:
        yield origin, result.contact_id or 0
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.nodb  # the demo brings its own SQLite database: once is enough
def test_hostile_contact_names_render_as_text_in_the_admin(
    page: Any,
    hostile_admin: tuple[str, int],
) -> None:
    origin, contact_id = hostile_admin
    page.goto(f"{origin}/demo/admin")
    page.goto(f"{origin}/admin/contacts")
    page.wait_for_selector("#contacts[data-loaded]")
    rows = page.locator("#rows").inner_text()
    assert NAME in rows
    assert "imported@example.com" in rows
    page.goto(f"{origin}/admin/contacts/{contact_id}")
    page.wait_for_load_state("networkidle")
    body = page.locator("main").inner_text()
    assert NAME in body or NAME in page.content().replace("&lt;", "<").replace("&gt;", ">")
    handlers = page.evaluate(
        "() => [...document.querySelectorAll('*')].flatMap((el) => [...el.attributes]"
        ".filter((a) => a.name.startsWith('on')).map((a) => el.tagName + ' ' + a.name))"
    )
    assert handlers == []
    assert page.locator("main img[src=x], main script, main svg[onload]").count() == 0
    assert page.evaluate("() => window.__xss") is None
