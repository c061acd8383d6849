"""The merchant's admin pages (``/admin/...``): server-rendered Jinja shells that load their data from the
JSON API (``/api/v1``) with ``fetch``. docs/admin.md explains the design.

Two ways in:

- **standalone** (SHOPLINE, ``popsync demo``): the signed session cookie of app.auth.admin_session. The
  pages' fetches carry the same cookie plus the session's CSRF token (a meta tag; app.auth.admin).
- **embedded** (Shopify): the page load carries App Bridge's ``id_token`` (verified here); the page loads
  App Bridge, whose ``fetch`` adds a fresh ``Authorization: Bearer`` session token to every API call. A
  page load inside the Shopify admin without an ``id_token`` is sent to the patch-ID-token page, which
  reloads it with one.

A page checks only who the merchant is and, for one record (a contact, form, segment), that it belongs to
the shop (another shop's: 404). The figures on the dashboard are computed here, in SQL scoped to the shop;
everything else comes from the API, so the pages and the merchants' own scripts see the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import abort
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request

from app.auth.admin import request_csrf_token
from app.auth.admin import require_shop
from app.auth.admin import shop_for_session_token
from app.auth.admin_session import start_session
from app.auth.session_tokens import SessionTokenError
from app.config import current_settings
from app.contacts.normalize import ValidationError
from app.contacts.segments import compile_segment
from app.contacts.segments import count_contacts
from app.contacts.segments import validate_segment
from app.db import request_session
from app.db import utcnow
from app.enums import Consent
from app.enums import Source
from app.imports import platform_writes_per_hour
from app.models import Contact
from app.models import Form
from app.models import Segment
from app.models import Shop
from app.shops import find_shop
from app.storefront.demo_store import DEMO_SHOP
from app.storefront.forms import DEFAULT_FIELDS
from app.storefront.forms import TEMPLATES
from app.storefront.forms import TEXT_KEYS
from app.storefront.forms import countries
from app.storefront.forms import default_texts

bp = Blueprint(
    "admin_pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/admin/static",
)

ADMIN_HOME = "/admin"
PATCH_ID_TOKEN_PATH = "/auth/patch-id-token"  # noqa: S105 (a path, not a secret)
CHART_DAYS = 30
# Sources in the chart's stacking order, with their legend names and colours (Polaris-like data colours).
CHART_SOURCES: tuple[tuple[str, str, str], ...] = (
    (Source.FORM, "Popup forms", "#2c6ecb"),
    (Source.IMPORT, "Imports", "#7f4fc9"),
    (Source.PLATFORM, "Store customers", "#008060"),
    (Source.OPEN, "Email opens", "#c4830a"),
    (Source.CLICK, "Link clicks", "#d72c0d"),
    (Source.MERCHANT, "Added by you", "#6d7175"),
)
# Standalone pages load nothing from elsewhere: a strict policy costs nothing. The embedded pages carry
# Shopify's frame-ancestors only, since App Bridge adds scripts and styles of its own.
STANDALONE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Embedded pages: App Bridge (cdn.shopify.com) adds scripts and styles of its own, so styles stay open, but
# no script runs unless it is a file of popsync's or Shopify's (no inline script, no eval), and only the
# shop's own admin may frame the page.
EMBEDDED_CSP = (
    "script-src 'self' https://cdn.shopify.com; object-src 'none'; base-uri 'none'; "
    "frame-ancestors https://{shop} https://admin.shopify.com"
)
NAV = (
    ("dashboard", "Dashboard", "/admin"),
    ("contacts", "Contacts", "/admin/contacts"),
    ("segments", "Segments", "/admin/segments"),
    ("import", "Import", "/admin/import"),
    ("export", "Export", "/admin/export"),
    ("forms", "Forms", "/admin/forms"),
    ("embed", "Embed status", "/admin/embed"),
)


@dataclass(frozen=True)
class Mode:
    """How the current page was opened: inside the Shopify admin (App Bridge) or on its own (cookie)."""

    embedded: bool
    # In embedded mode the links keep Shopify's shop/host parameters, so the next page load can get a
    # fresh id_token through the patch-ID-token page.
    link_query: str = ""


def _embedded_query() -> str:
    keep = {name: request.args[name] for name in ("shop", "host") if request.args.get(name)}
    return urlencode({**keep, "embedded": "1"})


def _in_shopify_admin() -> bool:
    return bool(request.args.get("shop")) and (request.args.get("embedded") == "1" or "host" in request.args)


def _unauthorized_page() -> Response:
    settings = current_settings()
    demo = settings.development and settings.demo_storefront
    page = render_template("admin/unauthorized.html", demo=demo)
    response = Response(page, 401, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = STANDALONE_CSP
    return response


def _patch_id_token_redirect() -> Response:
    full_path = request.full_path.rstrip("?")
    query = {"shop": request.args["shop"], "shopify-reload": full_path}
    if request.args.get("host"):
        query["host"] = request.args["host"]
    return redirect(f"{PATCH_ID_TOKEN_PATH}?{urlencode(query)}", 302)


def admin_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``view`` for an authenticated merchant (``g.shop``, ``g.mode``): an ``id_token`` from the Shopify
    admin, else the admin session cookie. Otherwise: inside the Shopify admin, a 302 to the patch-ID-token
    page (it reloads this page with a fresh token); anywhere else a 401 page."""
    from app.auth.admin_session import session_shop

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        id_token = request.args.get("id_token", "")
        if id_token:
            try:
                g.shop = shop_for_session_token(id_token)
            except SessionTokenError:
                return _patch_id_token_redirect() if _in_shopify_admin() else _unauthorized_page()
            g.mode = Mode(embedded=True, link_query=_embedded_query())
            return view(*args, **kwargs)
        shop = session_shop()
        if shop is not None:
            g.shop = shop
            g.mode = Mode(embedded=False)
            return view(*args, **kwargs)
        if _in_shopify_admin() and current_settings().shopify_api_key:
            return _patch_id_token_redirect()
        return _unauthorized_page()

    return wrapped


def render_page(template: str, page: str, title: str, **context: Any) -> Response:
    """A page in the shared layout, with the headers its mode needs."""
    shop: Shop = g.shop
    mode: Mode = g.mode
    settings = current_settings()
    html = render_template(
        f"admin/{template}",
        page=page,
        title=title,
        shop=shop,
        embedded=mode.embedded,
        api_key=settings.shopify_api_key if mode.embedded else "",
        csrf_token="" if mode.embedded else request_csrf_token(),
        nav=NAV,
        link=lambda path: f"{path}?{mode.link_query}" if mode.link_query else path,
        **context,
    )
    response = Response(html, 200, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    # Set here too: the app home (app.auth.shopify) renders this page outside this blueprint.
    response.headers["X-Content-Type-Options"] = "nosniff"
    if mode.embedded:
        response.headers["Content-Security-Policy"] = EMBEDDED_CSP.format(shop=shop.domain)
    else:
        response.headers["Content-Security-Policy"] = STANDALONE_CSP
    return response


@bp.after_request
def _page_headers(response: Response) -> Response:
    """Every admin page answer, error pages included: never sniffed into another type, and the address
    (which may carry an ``id_token``) never sent on to another origin."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


# --- the dashboard's figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass(frozen=True)
class Chart:
    """A stacked bar chart of new contacts per day by source, laid out for an inline SVG."""

    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # y, label
    days: list[tuple[float, str]]  # x, label (a few dates along the axis)
    legend: list[tuple[str, str, int]]  # name, colour, total in the period
    total: int
    summary: str


def _day_column(session: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("UTC", Contact.created_at), sa.Date)
    return sa.func.date(Contact.created_at)  # SQLite stores UTC text: its first ten characters are the day


def contacts_by_day(shop_id: int, today: date, days: int = CHART_DAYS) -> dict[tuple[str, str], int]:
    """New contacts of the shop per (day ``YYYY-MM-DD``, source) over the last ``days`` days."""
    session = request_session()
    day = _day_column(session)
    first = today - timedelta(days=days - 1)
    rows = session.execute(
        sa.select(day, Contact.source, sa.func.count())
        .where(Contact.shop_id == shop_id, Contact.created_at >= _midnight(first))
        .group_by(day, Contact.source)
    )
    return {(str(found)[:10], source): int(count) for found, source, count in rows}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def build_chart(counts: dict[tuple[str, str], int], today: date, days: int = CHART_DAYS) -> Chart:
    width, height, left, bottom, top = 720, 220, 40, 24, 10
    plot_width, plot_height = width - left - 8, height - bottom - top
    dates = [today - timedelta(days=days - 1 - i) for i in range(days)]
    known = {source for source, _, _ in CHART_SOURCES}
    per_day = {d.isoformat(): sum(n for (day, _), n in counts.items() if day == d.isoformat()) for d in dates}
    peak = max(per_day.values(), default=0)
    scale_top = _nice_ceiling(peak)
    slot = plot_width / days
    bars: list[Bar] = []
    for index, d in enumerate(dates):
        key = d.isoformat()
        y = float(top + plot_height)
        for source, name, colour in CHART_SOURCES:
            n = counts.get((key, source), 0)
            if source == Source.MERCHANT:
                n += sum(v for (day, other), v in counts.items() if day == key and other not in known)
            if not n:
                continue
            bar_height = plot_height * n / scale_top
            y -= bar_height
            bars.append(
                Bar(
                    x=round(left + index * slot + slot * 0.15, 2),
                    y=round(y, 2),
                    width=round(slot * 0.7, 2),
                    height=round(bar_height, 2),
                    colour=colour,
                    label=f"{key}: {n} from {name.lower()}",
                )
            )
    ticks = [
        (round(top + plot_height - plot_height * step / 4, 2), str(scale_top * step // 4))
        for step in range(5)
    ]
    labelled = [0, days // 3, 2 * days // 3, days - 1]
    axis = [(round(left + i * slot + slot / 2, 2), dates[i].strftime("%b %d")) for i in labelled]
    legend = []
    for source, name, colour in CHART_SOURCES:
        total = sum(n for (_, s), n in counts.items() if s == source)
        if source == Source.MERCHANT:
            total += sum(n for (_, s), n in counts.items() if s not in known)
        legend.append((name, colour, total))
    total = sum(counts.values())
    summary = f"{total} new contacts in the last {days} days; " + ", ".join(
        f"{name.lower()}: {n}" for name, _, n in legend if n
    )
    return Chart(
        width, height, bars, ticks, axis, legend, total, summary if total else "No new contacts yet."
    )


def _nice_ceiling(peak: int) -> int:
    """The chart's top: a round number at or above ``peak`` that splits into four whole steps."""
    for step in (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000):
        if step * 4 >= peak:
            return step * 4
    return ((peak + 3) // 4) * 4


@dataclass(frozen=True)
class Totals:
    contacts: int
    email: int
    sms: int
    email_consent: dict[str, int]
    sms_consent: dict[str, int]


def shop_totals(shop_id: int) -> Totals:
    """How many contacts, how many reachable per channel, and the channels' consent states."""
    session = request_session()
    total, email, sms = session.execute(
        sa.select(sa.func.count(), sa.func.count(Contact.email), sa.func.count(Contact.phone)).where(
            Contact.shop_id == shop_id
        )
    ).one()
    states = [state.value for state in Consent]

    def consent(column: Any, identifier: Any) -> dict[str, int]:
        rows = session.execute(
            sa.select(column, sa.func.count())
            .where(Contact.shop_id == shop_id, identifier.is_not(None))
            .group_by(column)
        )
        found = {state: int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in states}

    return Totals(
        contacts=int(total),
        email=int(email),
        sms=int(sms),
        email_consent=consent(Contact.email_consent, Contact.email),
        sms_consent=consent(Contact.sms_consent, Contact.phone),
    )


def dashboard_page() -> Response:
    today = utcnow().date()
    shop: Shop = g.shop
    chart = build_chart(contacts_by_day(shop.id, today), today)
    return render_page("dashboard.html", "dashboard", "Dashboard", chart=chart, totals=shop_totals(shop.id))


def embedded_home(domain: str) -> Response | None:
    """The Shopify app home's page (app.auth.shopify, after it verified the id_token): the dashboard in
    embedded mode; None when the shop is not installed here."""
    shop = find_shop(request_session(), domain)
    if shop is None or not shop.installed:
        return None
    g.shop = shop
    g.mode = Mode(embedded=True, link_query=_embedded_query())
    return dashboard_page()


# --- pages ----------------------------------------------------------------------------------------------


@bp.get("/admin")
@bp.get("/admin/")
@admin_page
def dashboard() -> Response:
    """The dashboard: totals by channel and consent, new contacts per day by source, embed and pulls."""
    return dashboard_page()


@bp.get("/admin/contacts")
@admin_page
def contacts() -> Response:
    """The contact list: search, channel tabs, segment, selection with remove and consent, pages, export."""
    channel = request.args.get("channel", "")
    return render_page(
        "contacts.html",
        "contacts",
        "Contacts",
        q=request.args.get("q", ""),
        channel=channel if channel in ("email", "sms") else "",
        segment=request.args.get("segment", ""),
    )


@bp.get("/admin/contacts/<int:contact_id>")
@admin_page
def contact(contact_id: int) -> Response:
    """One contact: editable fields, consent with its evidence, events, the platform customer, sync."""
    found = request_session().scalar(
        sa.select(Contact.id).where(Contact.shop_id == g.shop.id, Contact.id == contact_id)
    )
    if found is None:
        abort(404, description="no such contact")
    return render_page("contact.html", "contacts", "Contact", contact_id=contact_id)


@bp.get("/admin/segments")
@admin_page
def segments() -> Response:
    """The shop's segments with their counts."""
    return render_page("segments.html", "segments", "Segments")


@bp.get("/admin/segments/new")
@bp.get("/admin/segments/<int:segment_id>")
@admin_page
def segment(segment_id: int | None = None) -> Response:
    """The segment builder (a new segment, or one of the shop's; another shop's is 404)."""
    if segment_id is not None:
        found = request_session().scalar(
            sa.select(Segment.id).where(Segment.shop_id == g.shop.id, Segment.id == segment_id)
        )
        if found is None:
            abort(404, description="no such segment")
    title = "New segment" if segment_id is None else "Segment"
    return render_page("segment.html", "segments", title, segment_id=segment_id)


@bp.post("/admin/segments/count")
@require_shop
def segment_count() -> Any:
    """The segment builder's live count: ``{"match", "conditions"}`` → ``{"count"}`` without saving
    anything (the API's segments count only once saved); 422 names each bad condition like the API."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"ok": False, "error": "the body must be a JSON object"}), 400
    try:
        spec = validate_segment(
            {"name": "count", **{k: body[k] for k in ("match", "conditions") if k in body}}
        )
    except ValidationError as error:
        return jsonify({"ok": False, "errors": error.errors}), 422
    condition = compile_segment(spec, utcnow())
    return jsonify({"count": count_contacts(request_session(), g.shop.id, condition)})


@bp.get("/admin/import")
@admin_page
def import_page() -> Response:
    """Upload a CSV, follow its progress, read its report. Beside the "also write to the store" box, how
    many customers an hour the store's API rate allows (so the merchant knows before ticking it)."""
    shopline_rate = current_settings().shopline_requests_per_second
    per_hour = platform_writes_per_hour(request_session(), g.shop, shopline_rate)
    return render_page("import.html", "import", "Import contacts", platform_per_hour=per_hour)


@bp.get("/admin/export")
@admin_page
def export_page() -> Response:
    """Download the contacts as CSV, filtered."""
    return render_page("export.html", "export", "Export contacts")


@bp.get("/admin/forms")
@admin_page
def forms() -> Response:
    """The popup forms with their last 30 days' views, submissions and conversion."""
    return render_page("forms.html", "forms", "Forms")


@bp.get("/admin/forms/new")
@bp.get("/admin/forms/<int:form_id>")
@admin_page
def form(form_id: int | None = None) -> Response:
    """The form editor with a live preview of the real popup (another shop's form is 404)."""
    if form_id is not None:
        found = request_session().scalar(
            sa.select(Form.id).where(Form.shop_id == g.shop.id, Form.id == form_id)
        )
        if found is None:
            abort(404, description="no such form")
    return render_page(
        "form.html",
        "forms",
        "New form" if form_id is None else "Edit form",
        form_id=form_id,
        templates=TEMPLATES,
        text_keys=TEXT_KEYS,
        default_texts=default_texts(),
        default_fields=DEFAULT_FIELDS,
    )


@bp.get("/admin/forms/preview")
def form_preview() -> Response:
    """The popup preview the form editor frames: popup.js with its form served from the editor's own page
    (see static/preview.js). It holds no shop data and changes nothing, so it needs no login; it may only
    be framed by popsync's own pages."""
    settings = current_settings()
    html = render_template("admin/preview.html", app_url=settings.app_url, countries=list(countries()))
    response = Response(html, 200, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    ancestors = "'self'"
    if settings.shopify_api_key:
        # Inside the Shopify admin the editor is itself framed: every ancestor must be allowed.
        ancestors += " https://admin.shopify.com https://*.myshopify.com"
    response.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
    return response


@bp.get("/admin/embed")
@admin_page
def embed() -> Response:
    """Whether the popup's app embed is on in the live theme, with the link that switches it on."""
    return render_page("embed.html", "embed", "Embed status")


@bp.get("/demo/admin")
def demo_admin() -> Any:
    """``popsync demo``'s way into the admin: a session for the demo shop, then the dashboard. Development
    only (POPSYNC_ENV=development and DEMO_STOREFRONT on); 404 anywhere else."""
    settings = current_settings()
    if not (settings.development and settings.demo_storefront):
        abort(404)
    shop = find_shop(request_session(), DEMO_SHOP)
    if shop is None or not shop.installed:
        abort(404, description="the demo shop is not set up: run `popsync demo`")
    response = redirect(ADMIN_HOME, 302)
    start_session(response, shop)
    return response
