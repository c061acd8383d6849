"""The popup script in a real Chromium: triggers, targeting, keyboard and screen-reader behaviour, the body it
posts, errors from the server, and that nothing it does can hurt the host page.

The host page renders the real embed markup and loads storefront_js/popup.js (one test loads the shipped,
minified copy); a local fake popsync answers the script (see conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import EN_TEXTS
from tests.browser.conftest import ROOT
from tests.browser.conftest import SHIPPED_SCRIPT
from tests.browser.conftest import SHOP
from tests.browser.conftest import FakeStorefront
from tests.browser.conftest import free_port
from tests.browser.conftest import make_form
from tests.browser.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.nodb]

SCREENSHOTS = ROOT / "docs" / "screenshots"
DIALOG = "[role=dialog]"

# The element focused inside the popup's shadow root, described by id/name/type/text.
ACTIVE = """() => {
  const host = document.activeElement;
  if (!host || !host.shadowRoot) return {outside: true, id: host && host.id};
  const node = host.shadowRoot.activeElement;
  return node ? {id: node.id, tag: node.tagName.toLowerCase(), type: node.type || "", text: node.textContent}
              : {outside: true};
}"""


def open_popup(page: Any, storefront: FakeStorefront, path: str = "/") -> Any:
    page.goto(storefront.base_url + path)
    dialog = page.locator(DIALOG)
    dialog.wait_for(state="visible")
    return dialog


def assert_stays_closed(page: Any, storefront: FakeStorefront, requests_before: int = 0) -> None:
    """The forms were fetched and answered, and still no popup after a while."""
    wait_until(lambda: storefront.forms_requests > requests_before, message="the forms request")
    page.wait_for_timeout(600)
    assert page.locator(DIALOG).count() == 0


def test_opens_on_delay_trigger_as_an_accessible_dialog(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form(trigger={"type": "delay", "delay_seconds": 1.2, "frequency_days": 0})]
    page.goto(storefront.base_url + "/")
    wait_until(lambda: storefront.forms_requests, message="the forms request")
    page.wait_for_timeout(400)
    assert page.locator(DIALOG).count() == 0, "opened before its delay"
    dialog = page.locator(DIALOG)
    dialog.wait_for(state="visible", timeout=3000)

    assert dialog.get_attribute("aria-modal") == "true"
    title_id = dialog.get_attribute("aria-labelledby")
    assert page.locator(f"#{title_id}").text_content() == EN_TEXTS["title"]
    assert page.get_by_role("dialog", name=EN_TEXTS["title"]).is_visible()
    # labels are tied to their inputs; focus moved into the dialog, on the first field
    email = page.get_by_label("Email")
    assert email.get_attribute("type") == "email"
    assert page.evaluate(ACTIVE)["id"] == "ps-email"
    assert page.get_by_role("button", name="Close").is_visible()
    # one view beacon for the opening, for this form and shop
    wait_until(lambda: storefront.views, message="the view beacon")
    assert [view["path"] for view in storefront.views] == ["/storefront/forms/7/views"]
    assert storefront.views[0]["body"] == {"shop": SHOP}
    assert not page.watch.script_errors()


def test_opens_on_scroll_depth(page: Any, storefront: FakeStorefront) -> None:
    storefront.tall = True
    storefront.forms = [make_form(trigger={"type": "scroll", "scroll_percent": 50, "frequency_days": 0})]
    page.goto(storefront.base_url + "/")
    assert_stays_closed(page, storefront)
    page.mouse.wheel(0, 600)  # about a quarter of the page: not yet
    page.wait_for_timeout(300)
    assert page.locator(DIALOG).count() == 0
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.locator(DIALOG).wait_for(state="visible")


def test_exit_intent_opens_when_the_mouse_leaves_through_the_top(
    page: Any, storefront: FakeStorefront
) -> None:
    storefront.forms = [make_form(trigger={"type": "exit_intent", "frequency_days": 0})]
    page.goto(storefront.base_url + "/")
    assert_stays_closed(page, storefront)
    page.mouse.move(600, 300)
    page.evaluate(
        "document.dispatchEvent(new MouseEvent('mouseout', {clientX: 600, clientY: -2, relatedTarget: null}))"
    )
    page.locator(DIALOG).wait_for(state="visible")


def test_page_targeting(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form(targeting={"match": "equals", "paths": ["/collections/sale"]})]
    page.goto(storefront.base_url + "/collections/other")
    assert_stays_closed(page, storefront)
    open_popup(page, storefront, "/collections/sale/")

    storefront.forms = [make_form(id="8", targeting={"match": "contains", "paths": ["/products/"]})]
    requests = storefront.forms_requests
    page.goto(storefront.base_url + "/collections/sale")
    assert_stays_closed(page, storefront, requests)
    open_popup(page, storefront, "/products/blue-shirt")


def test_keyboard_only_completion_with_separate_consents(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form("email_sms")]
    open_popup(page, storefront)
    keyboard = page.keyboard
    keyboard.type("ann@example.com")
    keyboard.press("Tab")
    assert page.evaluate(ACTIVE)["id"] == "ps-email_consent"
    keyboard.press("Space")
    keyboard.press("Tab")
    assert page.evaluate(ACTIVE)["id"] == "ps-phone"
    keyboard.type("4155552671")
    keyboard.press("Tab")
    assert page.evaluate(ACTIVE)["id"] == "ps-sms_consent"
    keyboard.press("Space")
    keyboard.press("Tab")
    assert page.evaluate(ACTIVE)["type"] == "submit"
    keyboard.press("Enter")

    page.get_by_text("Thanks!").wait_for()
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["email"] == "ann@example.com"
    assert body["phone"] == "4155552671"
    assert body["email_consent"] is True
    assert body["sms_consent"] is True
    assert body["email_consent_text"] == EN_TEXTS["email_consent"]
    assert body["sms_consent_text"] == EN_TEXTS["sms_consent"]
    # the consent text is shown next to each box
    assert page.locator(DIALOG).count() == 1


def test_unticked_sms_box_sends_no_sms_consent(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form("email_sms")]
    open_popup(page, storefront)
    page.get_by_label("Email", exact=True).fill("ann@example.com")
    page.get_by_label(EN_TEXTS["email_consent"]).check()
    page.get_by_label("Phone").fill("4155552671")
    page.get_by_role("button", name="Subscribe").click()
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["email_consent"] is True
    assert body["sms_consent"] is False
    assert "sms_consent_text" not in body


def test_focus_is_trapped_and_escape_returns_focus(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [
        make_form("email_sms", trigger={"type": "delay", "delay_seconds": 1, "frequency_days": 0})
    ]
    page.goto(storefront.base_url + "/")
    page.focus("#host-button")
    page.locator(DIALOG).wait_for(state="visible")
    assert page.evaluate(ACTIVE)["id"] == "ps-email"

    seen = []
    for _ in range(6):  # once round the five controls and back: focus cycles, never leaves
        page.keyboard.press("Tab")
        active = page.evaluate(ACTIVE)
        assert not active.get("outside"), f"focus left the dialog: {active}"
        seen.append(active["id"] or active["type"])
    assert seen == ["ps-email_consent", "ps-phone", "ps-sms_consent", "submit", "button", "ps-email"]
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(ACTIVE)["text"] == "\u00d7", (
        "Shift+Tab from the first field goes to the close button"
    )

    page.keyboard.press("Escape")
    page.locator(DIALOG).wait_for(state="detached")
    assert page.evaluate("document.activeElement.id") == "host-button"


def test_close_button_closes(page: Any, storefront: FakeStorefront) -> None:
    open_popup(page, storefront)
    page.get_by_role("button", name="Close").click()
    page.locator(DIALOG).wait_for(state="detached")
    assert page.locator("[data-popsync]").count() == 0, "the popup's host element is removed on close"


def test_bad_email_shows_an_inline_error_and_sends_nothing(page: Any, storefront: FakeStorefront) -> None:
    open_popup(page, storefront)
    email = page.get_by_label("Email")
    email.fill("not-an-email")
    page.keyboard.press("Enter")
    error = page.locator("#ps-email-e")
    error.wait_for(state="visible")
    assert error.text_content() == EN_TEXTS["invalid_email"]
    assert error.get_attribute("aria-live") == "polite"
    assert email.get_attribute("aria-invalid") == "true"
    assert email.get_attribute("aria-describedby") == "ps-email-e"
    assert page.evaluate(ACTIVE)["id"] == "ps-email"

    email.fill("")
    page.get_by_role("button", name="Subscribe").click()
    assert error.text_content() == EN_TEXTS["required"]
    page.wait_for_timeout(200)
    assert storefront.submissions == []


def test_server_422_on_phone_is_shown_next_to_the_phone(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form("email_sms")]
    storefront.replies = [
        (422, {"ok": False, "errors": {"phone": "Enter a phone number that can receive texts"}})
    ]
    open_popup(page, storefront)
    page.get_by_label("Email", exact=True).fill("ann@example.com")
    phone = page.get_by_label("Phone")
    phone.fill("12")
    page.get_by_role("button", name="Subscribe").click()
    error = page.locator("#ps-phone-e")
    error.wait_for(state="visible")
    assert error.text_content() == "Enter a phone number that can receive texts"
    assert phone.get_attribute("aria-invalid") == "true"
    assert page.evaluate(ACTIVE)["id"] == "ps-phone"
    assert page.get_by_label("Email", exact=True).get_attribute("aria-invalid") is None

    # fixed and sent again: accepted
    phone.fill("4155552671")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("Thanks!").wait_for()
    assert len(storefront.submissions) == 2


def test_other_server_failures_show_a_general_message(page: Any, storefront: FakeStorefront) -> None:
    storefront.replies = [(429, {"ok": False})]
    open_popup(page, storefront)
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()
    status = page.get_by_role("status")
    status.wait_for(state="visible")
    assert "went wrong" in status.text_content()
    assert page.get_by_role("button", name="Subscribe").is_enabled()


def test_success_step_shows_the_discount_code(page: Any, context: Any, storefront: FakeStorefront) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=storefront.base_url)
    storefront.forms = [make_form(discount_code="WELCOME10")]
    open_popup(page, storefront)
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Thanks!").wait_for()
    assert page.evaluate(ACTIVE)["id"] == "ps-t", "focus moves to the success title"
    assert page.get_by_text("You're on the list.").is_visible()
    assert page.get_by_text("Your code").is_visible()
    assert page.locator("code").text_content() == "WELCOME10"
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == "WELCOME10"


def test_success_without_a_code_shows_no_code(page: Any, storefront: FakeStorefront) -> None:
    open_popup(page, storefront)
    page.get_by_label("Email").fill("ann@example.com")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Thanks!").wait_for()
    assert page.locator("code").count() == 0


def test_frequency_cap_holds_across_reloads(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form(trigger={"type": "delay", "delay_seconds": 0, "frequency_days": 7})]
    open_popup(page, storefront)
    page.keyboard.press("Escape")
    requests = storefront.forms_requests
    page.reload()
    assert_stays_closed(page, storefront, requests)
    # another form of the same shop has its own cap
    storefront.forms = [make_form(id="9")]
    open_popup(page, storefront)


def test_never_again_after_a_submission(page: Any, storefront: FakeStorefront) -> None:
    open_popup(page, storefront)  # frequency_days 0: it would show on every page view
    page.keyboard.press("Escape")
    open_popup(page, storefront)
    page.get_by_label("Email").fill("ann@example.com")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Thanks!").wait_for()
    requests = storefront.forms_requests
    page.reload()
    assert_stays_closed(page, storefront, requests)


def test_frequency_cap_falls_back_to_a_cookie(page: Any, context: Any, storefront: FakeStorefront) -> None:
    context.add_init_script(
        "Object.defineProperty(window, 'localStorage', {get() { throw new DOMException('denied'); }})"
    )
    storefront.forms = [make_form(trigger={"type": "delay", "delay_seconds": 0, "frequency_days": 7})]
    open_popup(page, storefront)
    page.keyboard.press("Escape")
    assert "popsync" in page.evaluate("document.cookie")
    requests = storefront.forms_requests
    page.reload()
    assert_stays_closed(page, storefront, requests)
    assert not page.watch.script_errors()


def test_body_carries_the_evidence_and_the_honeypot(page: Any, storefront: FakeStorefront) -> None:
    storefront.head_extra = '<script>document.cookie = "session=secret; path=/";</script>'
    open_popup(page, storefront, "/pages/about?utm_source=x")
    assert page.get_by_text(EN_TEXTS["email_consent"]).count() == 1, "the fine print is shown"
    assert page.get_by_role("checkbox").count() == 0, "a newsletter's opt-in is the email field itself"
    page.get_by_label("Email").fill("  ann@example.com ")
    page.wait_for_timeout(150)
    page.get_by_role("button", name="Subscribe").click()
    record = wait_until(lambda: storefront.submissions, message="the submission")[0]
    body = record["body"]
    assert record["path"] == "/storefront/submissions"
    assert record["content_type"].startswith("application/json")
    assert record["cookie"] is None, "submissions to the app go without cookies"
    assert body["shop"] == SHOP
    assert body["form_id"] == "7"
    assert body["locale"] == "en"
    assert body["email"] == "ann@example.com"
    assert body["page_url"] == storefront.base_url + "/pages/about?utm_source=x"
    assert body["website"] == ""
    assert isinstance(body["elapsed_ms"], int)
    assert body["elapsed_ms"] >= 150
    # a newsletter's email field is the opt-in: consent and the fine print shown are sent
    assert body["email_consent"] is True
    assert body["email_consent_text"] == EN_TEXTS["email_consent"]


def test_a_filled_honeypot_is_sent(page: Any, storefront: FakeStorefront) -> None:
    open_popup(page, storefront)
    honeypot = page.locator("input[name=website]")
    assert honeypot.get_attribute("tabindex") == "-1"
    assert honeypot.get_attribute("autocomplete") == "off"
    box = honeypot.bounding_box()
    assert box is None or box["x"] + box["width"] <= 0, "the honeypot is off screen"
    honeypot.fill("https://spam.example", force=True)
    page.get_by_label("Email").fill("bot@example.com")
    page.keyboard.press("Enter")
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["website"] == "https://spam.example"


def test_profile_template_fields(page: Any, storefront: FakeStorefront) -> None:
    form = make_form("profile")
    form["fields"][3] = {"name": "birthday", "format": "month_day"}
    storefront.forms = [form]
    open_popup(page, storefront)
    page.get_by_label("Email", exact=True).fill("ann@example.com")
    page.get_by_label("First name").fill("Ann")
    page.get_by_label("Last name").fill("Lee")
    page.get_by_label("Month").select_option("04")
    page.get_by_label("Day").select_option("01")
    page.get_by_label("Gender").select_option("female")
    country = page.get_by_label("Country")
    assert country.locator("option").all_text_contents() == ["", "Canada", "France", "United States"]
    country.select_option("CA")
    page.get_by_label(EN_TEXTS["email_consent"]).check()
    page.get_by_role("button", name="Subscribe").click()
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["first_name"] == "Ann"
    assert body["last_name"] == "Lee"
    assert body["birthday"] == "1904-04-01"
    assert body["gender"] == "female"
    assert body["country"] == "CA"
    assert body["email_consent"] is True


def test_full_date_birthday(page: Any, storefront: FakeStorefront) -> None:
    storefront.forms = [make_form("profile")]
    open_popup(page, storefront)
    page.get_by_label("Email", exact=True).fill("ann@example.com")
    page.get_by_label("Birthday").fill("1990-04-01")
    page.get_by_role("button", name="Subscribe").click()
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["birthday"] == "1990-04-01"
    assert "gender" not in body
    assert "email_consent_text" not in body
    assert body["email_consent"] is False


def test_texts_follow_the_locale(page: Any, storefront: FakeStorefront) -> None:
    storefront.locale = "fr-CA"
    dialog = open_popup(page, storefront)
    assert page.locator("#ps-t").text_content() == "Inscrivez-vous"
    assert page.get_by_label("Courriel").is_visible()
    assert dialog.get_by_role("button", name="Fermer").is_visible()
    page.get_by_label("Courriel").fill("ann@example.com")
    page.keyboard.press("Enter")
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["locale"] == "fr"


def test_unknown_locale_falls_back_to_the_default(page: Any, storefront: FakeStorefront) -> None:
    storefront.locale = "de-DE"
    open_popup(page, storefront)
    assert page.locator("#ps-t").text_content() == EN_TEXTS["title"]


def test_merchant_text_is_shown_as_text(page: Any, storefront: FakeStorefront) -> None:
    attack = '<img src=x onerror="window.pwned=1">'
    form = make_form("email_sms")
    form["texts"]["en"].update(title=attack, body=attack, email_consent=attack, email_label=attack)
    storefront.forms = [form]
    storefront.countries = [{"code": "US", "name": attack, "dial": "+1"}]
    open_popup(page, storefront)
    assert page.locator("#ps-t").text_content() == attack
    assert page.get_by_text(attack).count() >= 3
    assert page.locator("[role=dialog] img").count() == 0
    page.wait_for_timeout(100)
    assert page.evaluate("window.pwned") is None


def test_server_down_leaves_the_host_page_alone(page: Any, storefront: FakeStorefront) -> None:
    storefront.app_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    page.goto(storefront.base_url + "/")
    page.wait_for_load_state("load")
    page.wait_for_timeout(800)
    assert page.evaluate("window.hostScriptRan") is True
    assert page.locator("#host-status").text_content() == "host script ran"
    assert page.locator(DIALOG).count() == 0
    assert page.watch.script_errors() == []


@pytest.mark.parametrize(
    "answer",
    ["not json", '{"forms": {"oops": 1}}', '{"forms": [null, {"id": 3, "texts": 5, "fields": "x"}]}'],
)
def test_malformed_forms_answer_is_harmless(page: Any, storefront: FakeStorefront, answer: str) -> None:
    storefront.forms = []
    page.route("**/storefront/forms?*", lambda route: route.fulfill(status=200, body=answer))
    page.goto(storefront.base_url + "/")
    page.wait_for_timeout(500)
    assert page.evaluate("window.hostScriptRan") is True
    assert page.watch.script_errors() == []


def test_proxy_path_is_used_on_the_shops_own_domain(page: Any, storefront: FakeStorefront) -> None:
    # The app lives on another origin than the storefront, as in production.
    storefront.app_url = storefront.base_url.replace("127.0.0.1", "localhost")
    storefront.customer_id = "123"
    storefront.head_extra = '<script>document.cookie = "_shopify_s=abc; path=/";</script>'
    open_popup(page, storefront)
    page.get_by_label("Email").fill("ann@example.com")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Thanks!").wait_for()
    record = storefront.submissions[0]
    assert record["path"] == "/apps/popsync/submissions"
    assert "_shopify_s=abc" in (record["cookie"] or ""), "Shopify needs its session to name the customer"
    assert record["body"]["shop"] == SHOP
    assert "customer_id" not in record["body"], "the customer comes from the proxy's signature, not the body"
    wait_until(lambda: storefront.views, message="the view beacon")
    assert storefront.views[0]["origin"] == storefront.base_url


def test_declined_tracking_sends_no_view_beacon(page: Any, storefront: FakeStorefront) -> None:
    storefront.head_extra = (
        "<script>window.Shopify = {customerPrivacy: {analyticsProcessingAllowed: () => false}};</script>"
    )
    open_popup(page, storefront)
    page.get_by_label("Email").fill("ann@example.com")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Thanks!").wait_for()
    page.wait_for_timeout(300)
    assert storefront.views == []
    assert len(storefront.submissions) == 1


def test_shopline_embed_prefills_but_never_identifies(page: Any, storefront: FakeStorefront) -> None:
    storefront.embed = "shopline"
    storefront.head_extra = (
        "<script>window.Shopline = {handle: 'demo', locale: 'en', "
        "customer: {id: '4455', email: 'ann@example.com', phone: '+14155552671'}};</script>"
    )
    # the SHOPLINE shop's domain comes from window.Shopline.handle
    storefront.forms = [make_form()]
    page.route(
        "**/storefront/forms?shop=demo.myshopline.com",
        lambda route: route.fulfill(
            status=200,
            content_type="application/json",
            body=json.dumps({"forms": storefront.forms, "countries": []}),
        ),
    )
    dialog = open_popup(page, storefront)
    assert dialog.get_by_label("Email").input_value() == "ann@example.com"
    page.get_by_role("button", name="Subscribe").click()
    body = wait_until(lambda: storefront.submissions, message="the submission")[0]["body"]
    assert body["shop"] == "demo.myshopline.com"
    assert body["email"] == "ann@example.com"
    assert "4455" not in json.dumps(body)
    assert "+14155552671" not in json.dumps(body), "only email and names are prefilled"


def test_host_css_does_not_reach_the_popup_and_no_layout_shift(page: Any, storefront: FakeStorefront) -> None:
    page.add_init_script(
        "window.__shifts = 0; new PerformanceObserver(list => list.getEntries()"
        ".forEach(entry => { window.__shifts += entry.value; }))"
        ".observe({type: 'layout-shift', buffered: true});"
    )
    storefront.forms = [make_form(trigger={"type": "delay", "delay_seconds": 0.5, "frequency_days": 0})]
    page.goto(storefront.base_url + "/")
    # on a loaded machine the popup can open before goto() returns: count the page's own children
    host_children = "[...document.body.children].filter(node => !node.hasAttribute('data-popsync')).length"
    before = page.evaluate(host_children)
    page.locator(DIALOG).wait_for(state="visible")
    page.wait_for_timeout(300)
    assert page.evaluate(host_children) == before, "the popup adds nothing but its host"
    assert page.evaluate("document.body.children.length") == before + 1
    assert page.evaluate("getComputedStyle(document.querySelector('[data-popsync]')).position") == "fixed"
    assert page.evaluate("window.__shifts") == 0
    submit = page.get_by_role("button", name="Subscribe")
    assert submit.evaluate("node => getComputedStyle(node).backgroundColor") == "rgb(17, 17, 17)"
    email = page.get_by_label("Email")
    assert email.evaluate("node => getComputedStyle(node).borderTopWidth") == "1px"
    # and the popup's CSS does not reach the page
    assert page.locator("#host-button").evaluate("node => getComputedStyle(node).fontSize") == "30px"


def test_reduced_motion_turns_off_the_animation(page: Any, storefront: FakeStorefront) -> None:
    page.emulate_media(reduced_motion="reduce")
    open_popup(page, storefront)
    overlay_animation = page.evaluate(
        "getComputedStyle(document.querySelector('[data-popsync]').shadowRoot.querySelector('.o')).animationName"
    )
    assert overlay_animation == "none"


def test_shipped_minified_copy_works(page: Any, storefront: FakeStorefront) -> None:
    storefront.script = SHIPPED_SCRIPT
    storefront.forms = [make_form("email_sms", discount_code="SAVE5")]
    open_popup(page, storefront)
    page.get_by_label("Email", exact=True).fill("bad")
    page.keyboard.press("Enter")
    page.locator("#ps-email-e").wait_for(state="visible")
    page.get_by_label("Email", exact=True).fill("ann@example.com")
    page.get_by_label(EN_TEXTS["sms_consent"]).check()
    page.get_by_label("Phone").fill("4155552671")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Thanks!").wait_for()
    assert page.locator("code").text_content() == "SAVE5"
    body = storefront.submissions[0]["body"]
    assert body["sms_consent"] is True
    assert not page.watch.script_errors()


def _screenshot(
    page: Any, storefront: FakeStorefront, template: str, viewport: dict[str, int], path: Path
) -> None:
    page.set_viewport_size(viewport)
    form = make_form("newsletter" if template == "success" else template, discount_code="WELCOME10")
    if template == "profile":
        form["fields"][3] = {"name": "birthday", "format": "month_day"}
    storefront.forms = [form]
    dialog = open_popup(page, storefront)
    if template == "success":
        page.get_by_label("Email").fill("ann@example.com")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Thanks!").wait_for()
    box = dialog.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= viewport["width"], "the dialog fits the screen's width"
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    page.wait_for_timeout(250)  # the fade-in
    page.screenshot(path=str(path))


@pytest.mark.parametrize("template", ["newsletter", "email_sms", "profile", "success"])
@pytest.mark.parametrize(
    ("device", "viewport"),
    [("desktop", {"width": 1280, "height": 800}), ("mobile", {"width": 360, "height": 740})],
)
def test_screenshots(
    page: Any, storefront: FakeStorefront, template: str, device: str, viewport: dict[str, int]
) -> None:
    """docs/screenshots/<template>-<device>.png, and every template fits a 360-px-wide screen."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{template}-{device}.png"
    _screenshot(page, storefront, template, viewport, path)
    assert path.stat().st_size > 0
