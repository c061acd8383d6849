"""The real thing in Chromium: the demo storefront that ``popsync demo`` serves (``/demo/store``), popsync
and the development store in one server, and the worker in a thread — a shopper fills the popup with the
keyboard, the contact appears in the admin API and, after the worker, in the store's customers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from app.demo import build_demo
from app.demo import start_worker
from app.platforms.devstore import DevStore
from app.platforms.devstore import shopify_api
from tests.browser.conftest import free_port
from tests.browser.conftest import wait_until
from tests.browser.test_popup import ACTIVE
from tests.browser.test_popup import DIALOG
from tests.conftest import TEST_SECRET_KEY

pytestmark = [pytest.mark.browser, pytest.mark.nodb, pytest.mark.slow]


@dataclass
class Demo:
    origin: str
    api_key: str
    store: DevStore

    def contacts(self, q: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.origin}/api/v1/contacts",
            params={"q": q},
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        assert response.status_code == 200
        return response.json()["contacts"]

    def store_customers(self) -> list[dict[str, Any]]:
        [(shop_id, _)] = self.store.shop_domains("shopify")
        return shopify_api.list_customers(self.store, shop_id)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder: Path = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {
        "POPSYNC_ENV": "development",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite:///{folder / 'popsync.sqlite3'}",
        "POPSYNC_INSTANCE_PATH": str(folder),
    }
    app, store, api_key, wsgi = build_demo(port, env)
    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo", daemon=True)
    thread.start()
    stop = start_worker(app)
    try:
        yield Demo(f"http://127.0.0.1:{port}", api_key, store)
    finally:
        stop.set()
        server.shutdown()
        thread.join(timeout=10)


def open_popup(page: Any, demo: Demo) -> None:
    page.goto(f"{demo.origin}/demo/store")
    # The demo form opens after a two-second delay; the store page's own script ran before that.
    assert page.evaluate("() => window.hostPageReady === true")
    page.wait_for_selector(DIALOG, timeout=8000)


def test_a_shopper_subscribes_with_the_keyboard_and_reaches_the_store(page: Any, demo: Demo) -> None:
    open_popup(page, demo)
    keyboard = page.keyboard
    assert page.evaluate(ACTIVE)["id"] == "ps-email"  # focus moved into the dialog
    keyboard.type("keyboard.shopper@example.com")
    keyboard.press("Tab")
    keyboard.press("Space")  # email consent
    keyboard.press("Tab")
    keyboard.type("(415) 555-2672")  # national: read in the shop's region
    keyboard.press("Tab")
    keyboard.press("Space")  # SMS consent
    keyboard.press("Tab")
    # People take a moment to fill a form; a submission within 1.5 s of opening is taken for a bot.
    page.wait_for_timeout(1600)
    keyboard.press("Enter")
    page.get_by_text("WELCOME10").wait_for()

    [contact] = wait_until(lambda: demo.contacts("keyboard.shopper"), message="the contact in the admin API")
    assert (contact["email"], contact["phone"]) == ("keyboard.shopper@example.com", "+14155552672")
    assert (contact["email_consent"], contact["sms_consent"]) == ("subscribed", "subscribed")
    assert "popsync-demo" in contact["tags"]

    def in_store() -> dict[str, Any] | None:
        return next(
            (c for c in demo.store_customers() if c.get("email") == "keyboard.shopper@example.com"), None
        )

    customer = wait_until(in_store, timeout=20, message="the development-store customer")
    assert customer["phone"] == "+14155552672"
    synced = wait_until(
        lambda: [c for c in demo.contacts("keyboard.shopper") if c["sync_status"] == "synced"],
        timeout=20,
        message="the contact marked synced",
    )
    assert synced[0]["platform_customer_id"]

    # Never again after a submission, across reloads.
    page.reload()
    page.wait_for_timeout(3000)
    assert page.locator(DIALOG).count() == 0


def test_the_servers_phone_message_is_shown_and_nothing_is_kept(browser: Any, demo: Demo) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740})  # a fresh shopper, on a phone
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        open_popup(page, demo)
        dialog = page.locator(DIALOG)
        dialog.get_by_label("Email", exact=True).fill("bad.phone@example.com")
        dialog.get_by_label("Phone", exact=True).fill("12")
        page.wait_for_timeout(1600)  # not a bot
        dialog.get_by_role("button", name="Subscribe").click()
        alert = dialog.locator("[aria-invalid=true]")
        alert.first.wait_for()
        assert "phone" in (alert.first.get_attribute("id") or "")
        described = dialog.locator(f"#{alert.first.get_attribute('aria-describedby')}")
        assert described.inner_text().strip()  # the server's words, next to the field
        assert demo.contacts("bad.phone") == []
        assert errors == []
    finally:
        context.close()
