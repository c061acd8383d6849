"""Browser fixtures: Chromium driven by Playwright, and a small local storefront with a fake popsync.

The storefront serves a host page that renders the real theme app embed markup (the Shopify block's Liquid
or the SHOPLINE block, with their expressions filled in) and loads the popup script the way the embed does.
The same server answers the popsync routes the script calls (forms, submissions, the app proxy path, view
beacons) from a `FakeStorefront` the test configures, and records every request it gets.

Chromium: Debian's /usr/bin/chromium when present, else Playwright's own downloaded browser. When neither
launches, every browser test FAILS with the reason: a missing browser must never pass as a skip.
"""

from __future__ import annotations

import html
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_SCRIPT = ROOT / "storefront_js" / "popup.js"
SHIPPED_SCRIPT = ROOT / "app" / "storefront" / "static" / "popup.js"
SHOPIFY_BLOCK = ROOT / "extensions" / "popsync-embed" / "blocks" / "popsync-embed.liquid"
SHOPLINE_BLOCK = ROOT / "extensions" / "shopline-popsync-embed" / "blocks" / "popsync-embed.html"
SHOPLINE_LOADER = ROOT / "extensions" / "shopline-popsync-embed" / "public" / "popsync-loader.js"
SYSTEM_CHROMIUM = Path("/usr/bin/chromium")
SHOP = "demo.myshopify.com"

COUNTRIES = [
    {"code": "CA", "name": "Canada", "dial": "+1"},
    {"code": "FR", "name": "France", "dial": "+33"},
    {"code": "US", "name": "United States", "dial": "+1"},
]

FIELDS = {
    "newsletter": [{"name": "email", "required": True}],
    "email_sms": [{"name": "email", "required": True}, {"name": "phone", "required": False}],
    "profile": [
        {"name": "email", "required": True},
        {"name": "first_name"},
        {"name": "last_name"},
        {"name": "birthday", "format": "date"},
        {"name": "gender"},
        {"name": "country"},
    ],
}

EN_TEXTS = {
    "title": "Join the list",
    "body": "News and offers, twice a month.",
    "email_label": "Email",
    "phone_label": "Phone",
    "first_name_label": "First name",
    "last_name_label": "Last name",
    "birthday_label": "Birthday",
    "gender_label": "Gender",
    "country_label": "Country",
    "email_consent": "Yes, email me offers and news.",
    "sms_consent": "Yes, text me offers. Msg & data rates may apply.",
    "submit": "Subscribe",
    "close": "Close",
    "invalid_email": "Enter a valid email",
    "required": "This field is required",
    "success_title": "Thanks!",
    "success_body": "You're on the list.",
    "discount_label": "Your code",
}

FR_TEXTS = {
    **EN_TEXTS,
    "title": "Inscrivez-vous",
    "body": "Nouvelles et offres.",
    "email_label": "Courriel",
    "submit": "S'inscrire",
    "close": "Fermer",
}


def make_form(template: str = "newsletter", **overrides: Any) -> dict[str, Any]:
    """A form as GET /storefront/forms returns it (docs/storefront.md), opening at once by default."""
    form: dict[str, Any] = {
        "id": "7",
        "name": "Welcome",
        "template": template,
        "fields": [dict(spec) for spec in FIELDS[template]],
        "trigger": {"type": "delay", "delay_seconds": 0, "frequency_days": 0},
        "targeting": {"match": "all", "paths": []},
        "default_locale": "en",
        "texts": {"en": dict(EN_TEXTS), "fr": dict(FR_TEXTS)},
        "discount_code": None,
        "tag": "popsync-welcome",
    }
    form.update(overrides)
    return form


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render_shopify_embed(values: dict[str, str]) -> str:
    """The Shopify app embed's root element, its Liquid filled in with `values` (by expression)."""
    liquid = SHOPIFY_BLOCK.read_text()
    match = re.search(r'<div\s+id="popsync-root".*?</div>', liquid, flags=re.DOTALL)
    assert match, "the Shopify block lost its #popsync-root element"
    markup = re.sub(
        r"{%\s*if customer\s*%}(.*?){%\s*endif\s*%}",
        lambda found: found.group(1) if values.get("customer.id") else "",
        match.group(0),
        flags=re.DOTALL,
    )
    return re.sub(
        r"{{\s*([\w.]+)\s*(?:\|[^}]*)?}}", lambda found: html.escape(values[found.group(1)]), markup
    )


def render_shopline_embed(app_url: str) -> str:
    """The SHOPLINE app embed block without its schema, `block.settings.app_url` filled in."""
    block = SHOPLINE_BLOCK.read_text().split("{{#schema}}")[0]
    return block.replace("{{ block.settings.app_url }}", html.escape(app_url))


@dataclass
class FakeStorefront:
    """What the local storefront serves, and what it saw. Tests change the fields before page.goto."""

    forms: list[dict[str, Any]] = field(default_factory=lambda: [make_form()])
    countries: list[dict[str, str]] = field(default_factory=lambda: list(COUNTRIES))
    embed: str = "shopify"  # "shopify" | "shopline"
    script: Path = SOURCE_SCRIPT
    app_url: str | None = None  # None: this server's own origin
    proxy_path: str = "/apps/popsync"
    locale: str = "en"
    customer_id: str = ""
    head_extra: str = ""  # markup before the embed (e.g. window.Shopify stubs)
    tall: bool = False
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # next submission answers
    forms_requests: int = 0
    submissions: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    @property
    def effective_app_url(self) -> str:
        return self.app_url if self.app_url is not None else self.base_url

    def page_html(self) -> str:
        if self.embed == "shopline":
            embed = render_shopline_embed(self.effective_app_url) + (
                '\n<script src="/shopline/popsync-loader.js" defer></script>'
            )
        else:
            embed = render_shopify_embed(
                {
                    "block.settings.app_url": self.effective_app_url,
                    "shop.permanent_domain": SHOP,
                    "block.settings.proxy_path": self.proxy_path,
                    "customer.id": self.customer_id,
                    "request.locale.iso_code": self.locale,
                }
            )
            # Shopify injects the embed's "javascript" asset itself; the script runs deferred.
            embed += '\n<script src="/assets/popup.js" defer></script>'
        filler = '<div style="height:3000px">long page</div>' if self.tall else ""
        # The host theme's CSS is deliberately hostile: none of it may reach the popup.
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Host shop</title>
<style>
  body {{ margin: 0; font: 18px Georgia, serif; background: #f4efe6; color: #333; }}
  header {{ padding: 16px; background: #2d4a3e; color: #fff; }}
  button {{ background: hotpink !important; font-size: 30px; }}
  input {{ border: 6px solid red; }}
  p {{ color: green; text-transform: uppercase; }}
  div {{ padding: 3px; }}
</style>
{self.head_extra}
</head><body>
<header><h1>Demo shop</h1><button id="host-button" type="button">Menu</button></header>
<main><p id="host-status">host script has not run</p><p>Welcome to our shop.</p>{filler}</main>
{embed}
<script>
  document.getElementById("host-status").textContent = "host script ran";
  window.hostScriptRan = true;
</script>
</body></html>"""

    def answer_submission(self) -> tuple[int, dict[str, Any]]:
        return self.replies.pop(0) if self.replies else (200, {"ok": True})


def _handler(state: FakeStorefront) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # The app origin may differ from the page's (proxy tests): answer CORS like the real app.
            self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
            self.send_header("Vary", "Origin")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode())

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
            self.send_header("Access-Control-Allow-Methods", "POST")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.end_headers()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/storefront/forms":
                state.forms_requests += 1
                if parse_qs(url.query).get("shop") != [SHOP]:
                    self._json(404, {"error": "unknown shop"})
                    return
                self._json(200, {"forms": state.forms, "countries": state.countries})
            elif url.path in ("/assets/popup.js", "/storefront/popup.js"):
                self._send(200, state.script.read_bytes(), "text/javascript")
            elif url.path == "/shopline/popsync-loader.js":
                self._send(200, SHOPLINE_LOADER.read_bytes(), "text/javascript")
            elif url.path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._send(200, state.page_html().encode(), "text/html; charset=utf-8")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record = {
                "path": url.path,
                "content_type": self.headers.get("Content-Type", ""),
                "origin": self.headers.get("Origin"),
                "cookie": self.headers.get("Cookie"),
                "body": json.loads(raw or b"null"),
            }
            if url.path.endswith("/views"):
                state.views.append(record)
                self._send(204)
            elif url.path in ("/storefront/submissions", "/apps/popsync/submissions"):
                state.submissions.append(record)
                self._json(*state.answer_submission())
            else:
                self._json(404, {"error": "not found"})

    return Handler


@pytest.fixture
def storefront() -> Iterator[FakeStorefront]:
    state = FakeStorefront()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]' (it is in the dev extra)")
    attempts: list[str] = []
    with sync_playwright() as playwright:
        launched = None
        options: list[dict[str, Any]] = []
        if SYSTEM_CHROMIUM.exists():
            options.append({"executable_path": str(SYSTEM_CHROMIUM)})
        options.append({})  # Playwright's own browser, if `playwright install chromium` fetched it
        for option in options:
            try:
                launched = playwright.chromium.launch(headless=True, **option)
                break
            except PlaywrightError as error:
                attempts.append(f"{option or 'playwright chromium'}: {str(error).splitlines()[0]}")
        if launched is None:
            pytest.fail(
                "no Chromium could be launched for the browser tests; install one with "
                "`apt-get install -y chromium` (or `.venv/bin/playwright install chromium`). Tried:\n"
                + "\n".join(attempts)
            )
        yield launched
        launched.close()


@dataclass
class PageWatch:
    """Console errors and uncaught exceptions seen on a page."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def script_errors(self) -> list[str]:
        # Chromium itself logs every failed network request as a console error ("Failed to load
        # resource: net::ERR_CONNECTION_REFUSED"); no script can prevent that line, so it is not ours.
        own = [text for text in self.console_errors if not text.startswith("Failed to load resource")]
        return own + self.page_errors


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    browser_context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield browser_context
    browser_context.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    new_page = context.new_page()
    new_page.set_default_timeout(5000)
    watch = PageWatch()
    new_page.on(
        "console", lambda message: message.type == "error" and watch.console_errors.append(message.text)
    )
    new_page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    new_page.watch = watch
    yield new_page
    # Whatever a test did, the popup never put an error on the host page's console.
    assert watch.script_errors() == []


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, message: str = "condition") -> Any:
    """Poll `condition` (a server-side record, typically) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")
