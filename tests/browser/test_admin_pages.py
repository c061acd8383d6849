"""The merchant's admin pages in Chromium, against the real demo (popsync and the development store in one
server, the worker in a thread), entered the way ``popsync demo`` prints: ``/demo/admin``.

Screenshots of the main pages go to docs/screenshots/admin-<page>.png (fixed data, 1280x800 viewport).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from playwright.sync_api import expect
from werkzeug.serving import make_server

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.db import get_database
from app.demo import build_demo
from app.demo import start_worker
from app.enums import Source
from app.enums import SyncStatus
from app.models import Contact
from app.models import Shop
from app.storefront.demo_store import DEMO_SHOP
from tests.browser.conftest import free_port
from tests.browser.conftest import wait_until
from tests.browser.test_popup import DIALOG
from tests.conftest import TEST_SECRET_KEY

pytestmark = [pytest.mark.browser, pytest.mark.nodb, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PEOPLE = [
    Collected(
        email="ann.lee@example.com", first_name="Ann", last_name="Lee", email_consent=ConsentIntent.SUBSCRIBE
    ),
    Collected(email="bo.chen@example.com", phone="+14155552671", first_name="Bo", last_name="Chen"),
    Collected(phone="+14155550123", first_name="Cy", sms_consent=ConsentIntent.SUBSCRIBE),
    Collected(email="dee.moss@example.com", first_name="Dee", last_name="Moss"),
    Collected(email="eve.stone@example.com", phone="+14155550188", first_name="Eve", last_name="Stone"),
]


@dataclass
class Demo:
    origin: str
    api_key: str
    app: Flask

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(
            f"{self.origin}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def contacts(self, q: str = "") -> list[dict[str, Any]]:
        return self.get("/api/v1/contacts", q=q, limit=200)["contacts"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder: Path = tmp_path_factory.mktemp("admin-demo")
    port = free_port()
    env = {
        "POPSYNC_ENV": "development",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite:///{folder / 'popsync.sqlite3'}",
        "POPSYNC_INSTANCE_PATH": str(folder),
    }
    app, _store, api_key, wsgi = build_demo(port, env)
    service = app.extensions["popsync.contacts"]
    with app.app_context():
        from app.db import get_database

        with get_database(app).sessionmaker() as session:
            shop_id = session.query(Shop.id).filter(Shop.domain == DEMO_SHOP).scalar()
    for person in PEOPLE:
        service.sync(shop_id, person, source=Source.FORM)
    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="admin-demo", daemon=True)
    thread.start()
    stop = start_worker(app)
    demo = Demo(f"http://127.0.0.1:{port}", api_key, app)

    # The worker writes the contacts to the development store: wait, so the pages show a settled list.
    def settled() -> bool:
        time.sleep(0.3)
        return all(c["sync_status"] != "pending" for c in demo.contacts())

    wait_until(settled, timeout=30, message="the platform writes done")
    try:
        yield demo
    finally:
        stop.set()
        server.shutdown()
        thread.join(timeout=10)


def sign_in(page: Any, demo: Demo) -> None:
    page.goto(f"{demo.origin}/demo/admin")
    assert page.url == f"{demo.origin}/admin"


def contacts_loaded(page: Any) -> None:
    page.wait_for_selector("#contacts[data-loaded]")
    page.wait_for_function("() => !document.getElementById('contacts').hasAttribute('aria-busy')")


def shown_emails(page: Any) -> list[str]:
    return [cell.strip() for cell in page.locator("#rows tr td:nth-child(3)").all_inner_texts()]


def test_the_dashboard(page: Any, demo: Demo) -> None:
    sign_in(page, demo)
    assert page.get_by_test_id("total-contacts").inner_text() == str(len(demo.contacts()))
    page.wait_for_selector("#embed-card[data-enabled]")
    assert page.locator(".chart-svg rect").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "admin-dashboard.png"))


def test_search_and_the_channel_tabs(page: Any, demo: Demo) -> None:
    sign_in(page, demo)
    page.get_by_role("link", name="Contacts", exact=True).click()
    contacts_loaded(page)
    page.screenshot(path=str(SCREENSHOTS / "admin-contacts.png"))
    page.get_by_label("Search contacts").fill("stone")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 1")
    assert shown_emails(page) == ["eve.stone@example.com"]
    assert "q=stone" in page.url

    page.get_by_label("Search contacts").fill("")
    page.keyboard.press("Enter")
    everyone = demo.contacts()
    with_phone = len([c for c in everyone if c["phone"]])
    page.get_by_role("tab", name="SMS").click()
    page.wait_for_function(f"() => document.querySelectorAll('#rows tr').length === {with_phone}")
    phones = [cell.strip() for cell in page.locator("#rows tr td:nth-child(4)").all_inner_texts()]
    assert all(phone.startswith("+1") for phone in phones)
    # The export link follows the filters.
    assert page.locator("#export-link").get_attribute("href") == "/api/v1/contacts/export.csv?channel=sms"
    # The tabs work from the keyboard too.
    page.get_by_role("tab", name="SMS").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => document.querySelectorAll('#rows tr').length === {len(everyone)}")
    assert page.get_by_role("tab", name="All").get_attribute("aria-selected") == "true"


def test_editing_a_contact_shows_the_servers_422_inline(page: Any, demo: Demo) -> None:
    [dee] = demo.contacts("dee.moss")
    sign_in(page, demo)
    page.goto(f"{demo.origin}/admin/contacts/{dee['id']}")
    page.wait_for_selector("#contact[data-loaded]")
    assert page.get_by_label("First name").input_value() == "Dee"
    page.get_by_label("Phone").fill("12")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#e-phone")
    error.wait_for()
    assert error.inner_text().strip()
    assert page.get_by_label("Phone").get_attribute("aria-invalid") == "true"
    assert page.evaluate("() => document.activeElement.id") == "f-phone"
    assert demo.contacts("dee.moss")[0]["phone"] is None  # nothing changed

    page.get_by_label("Phone").fill("")
    page.get_by_label("First name").fill("Deirdre")
    tags = page.get_by_label("Tags (separated by commas)")
    tags.fill(f"{tags.input_value()}, vip , , tea club, vip")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    [saved] = demo.contacts("dee.moss")
    assert saved["first_name"] == "Deirdre"
    assert saved["tags"][-2:] == ["vip", "tea club"]  # trimmed, empty ones dropped, each once
    assert page.locator("#e-phone").inner_text() == ""
    page.screenshot(path=str(SCREENSHOTS / "admin-contact.png"), full_page=True)


def test_a_failed_write_is_explained_in_words_and_retried_from_the_contact_page(
    page: Any, demo: Demo
) -> None:
    # A contact of its own, imported (kept local: no write of it is running that could finish meanwhile and
    # set its status back), then marked as a write the platform kept refusing.
    result = demo.app.extensions["popsync.contacts"].sync(
        _shop_id(demo), Collected(email="retry.me@example.com", first_name="Rita"), source=Source.IMPORT
    )
    with get_database(demo.app).write_transaction() as session:
        contact = session.get(Contact, result.contact_id)
        assert contact is not None
        contact.sync_status = SyncStatus.FAILED
        contact.sync_detail = "The platform refused the write: Phone is invalid."
        contact.pending_fields = ["email", "first_name"]
    sign_in(page, demo)
    page.goto(f"{demo.origin}/admin/contacts/{result.contact_id}")
    page.wait_for_selector("#contact[data-loaded]")
    words = page.locator("#sync-words").inner_text()
    assert "kept refusing the write" in words
    assert "Phone is invalid." in words
    page.get_by_role("button", name="Retry").click()
    page.get_by_text("Queued again").wait_for()
    # The worker of the demo writes it again, and the development store takes it this time.
    wait_until(lambda: demo.contacts("retry.me")[0]["sync_status"] == "synced", timeout=20, message="synced")
    page.reload()
    page.wait_for_selector("#contact[data-loaded]")
    assert page.get_by_role("button", name="Retry").is_hidden()


def test_removing_contacts_asks_first(page: Any, demo: Demo) -> None:
    # An imported contact stays in popsync: a submission would also be written to the development store,
    # whose customers/create webhook, arriving after the removal, would rightly add the person back.
    demo.app.extensions["popsync.contacts"].sync(
        _shop_id(demo), Collected(email="remove.me@example.com", first_name="Remy"), source=Source.IMPORT
    )
    sign_in(page, demo)
    page.goto(f"{demo.origin}/admin/contacts?q=remove.me")
    contacts_loaded(page)
    assert shown_emails(page) == ["remove.me@example.com"]
    page.get_by_label("Select Remy").check()
    page.get_by_role("button", name="Remove", exact=True).click()
    dialog = page.locator("dialog#confirm-remove")
    assert dialog.is_visible()
    assert "Remove 1 contact" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert not dialog.is_visible()
    assert demo.contacts("remove.me")  # cancelled: still there

    page.get_by_role("button", name="Remove", exact=True).click()
    dialog.get_by_role("button", name="Remove").click()
    page.get_by_text("1 contact removed.").wait_for()
    assert demo.contacts("remove.me") == []
    # The banner shows before the list is fetched again: wait for the reloaded list, not just read it.
    expect(page.locator("#rows tr")).to_have_count(0)


def test_importing_a_csv_shows_progress_and_the_report(page: Any, demo: Demo) -> None:
    csv = (
        b"email,phone,first_name,email_consent\n"
        b"imp.one@example.com,,Ima,yes\n"
        b"imp.two@example.com,+14155550999,Ivo,\n"
        b"not-an-email,,Bad,\n"
    )
    sign_in(page, demo)
    page.get_by_role("link", name="Import", exact=True).first.click()
    page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": csv}
    )
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_selector("#progress-card[data-status=done]", timeout=20000)
    assert page.locator("#progress-bar").get_attribute("aria-valuenow") == "100"
    page.locator("#report").wait_for()
    assert page.locator("#r-created").inner_text() == "2"
    assert page.locator("#r-errors").inner_text() == "1"
    assert page.locator("#error-rows tr td").first.inner_text() == "4"
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the report (CSV)").click()
    assert download.value.suggested_filename.endswith("-report.csv")
    assert [c["sync_status"] for c in demo.contacts("imp.")] == ["local", "local"]
    page.screenshot(path=str(SCREENSHOTS / "admin-import.png"), full_page=True)

    # The import's id went into the address: the page reloaded (or opened again) follows the same import.
    assert re.search(r"[?&]import=\d+", page.url)
    page.reload()
    page.wait_for_selector("#progress-card[data-status=done]", timeout=20000)
    assert page.locator("#r-created").inner_text() == "2"


def test_a_segments_count_follows_its_conditions(page: Any, demo: Demo) -> None:
    subscribed = len([c for c in demo.contacts() if c["email_consent"] == "subscribed"])
    sign_in(page, demo)
    page.goto(f"{demo.origin}/admin/segments/new")
    page.wait_for_function(
        f"() => document.getElementById('segment-form').dataset.counted === '{subscribed}'"
    )
    assert page.locator("#count").inner_text() == str(subscribed)
    page.get_by_label("Name").fill("Texters")
    page.get_by_label("Field").select_option("phone")
    with_phone = len([c for c in demo.contacts() if c["phone"]])
    page.wait_for_function(
        f"() => document.getElementById('segment-form').dataset.counted === '{with_phone}'"
    )
    page.screenshot(path=str(SCREENSHOTS / "admin-segment.png"), full_page=True)
    page.get_by_role("button", name="Save").click()
    # The saved segment's own page (its id, where "**/admin/segments/*" also matched the "new" page and
    # let the test read the list before the save had landed).
    page.wait_for_url(re.compile(r".*/admin/segments/\d+(\?.*)?$"))
    [segment] = [s for s in demo.get("/api/v1/segments")["segments"] if s["name"] == "Texters"]
    assert segment["count"] == with_phone


def test_a_form_edit_changes_the_popup_on_the_storefront(page: Any, demo: Demo, browser: Any) -> None:
    sign_in(page, demo)
    page.get_by_role("link", name="Forms", exact=True).click()
    page.get_by_role("link", name="Welcome (demo)").click()
    page.wait_for_selector("#form-editor[data-loaded]")
    title = page.get_by_label("Title", exact=True)
    assert title.input_value() == "Join the tea club"
    title.fill("Steep a little deeper")
    # The preview runs the real popup script with the title being edited, before anything is saved.
    page.frame_locator("#preview").get_by_role("heading", name="Steep a little deeper").wait_for(timeout=8000)
    page.screenshot(path=str(SCREENSHOTS / "admin-form.png"))
    page.get_by_role("button", name="Save").click()
    page.locator("#form-editor[data-saved]").wait_for(state="attached")

    shopper = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        store = shopper.new_page()
        store.goto(f"{demo.origin}/demo/store")
        store.wait_for_selector(DIALOG, timeout=8000)
        assert store.locator(DIALOG).get_by_role("heading").first.inner_text() == "Steep a little deeper"
    finally:
        shopper.close()
    # The preview was never counted as a view of the form.
    [form] = [f for f in demo.get("/api/v1/forms")["forms"] if f["name"] == "Welcome (demo)"]
    assert form["stats"]["views"] == 1


def test_the_forms_and_embed_pages(page: Any, demo: Demo) -> None:
    sign_in(page, demo)
    page.goto(f"{demo.origin}/admin/forms")
    page.get_by_role("link", name="Welcome (demo)").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "admin-forms.png"))
    page.goto(f"{demo.origin}/admin/embed")
    page.wait_for_selector("#embed-card[data-enabled]")
    assert page.locator("#embed-link").get_attribute("href").startswith(f"https://{DEMO_SHOP}/admin/themes")


def test_the_pages_work_at_768px_and_by_keyboard(browser: Any, demo: Demo) -> None:
    context = browser.new_context(viewport={"width": 768, "height": 1000})
    try:
        page = context.new_page()
        sign_in(page, demo)
        page.goto(f"{demo.origin}/admin/contacts")
        contacts_loaded(page)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 768  # no sideways scrolling of the page itself
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip"
        page.keyboard.press("Tab")
        focused = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert focused != "none"  # a visible focus ring
    finally:
        context.close()


def _shop_id(demo: Demo) -> int:
    from app.db import get_database

    with get_database(demo.app).sessionmaker() as session:
        return int(session.query(Shop.id).filter(Shop.domain == DEMO_SHOP).scalar())
