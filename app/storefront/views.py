"""The storefront's routes: public, no login, called by the popup script from the shop's own pages
(docs/storefront.md is the protocol).

- ``GET /storefront/popup.js``: the script itself (cacheable, ETag).
- ``GET /storefront/forms?shop=D``: the shop's active forms and the country list (cacheable, ETag).
- ``POST /storefront/forms/<id>/views``: the view beacon, for the form's conversion figures.
- ``POST /storefront/submissions``: a submission, validated, synced by the rules and committed before the
  answer; the platform write follows through the outbox. The storefront never learns whether a contact was
  created, updated or left alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import abort
from flask import jsonify
from flask import request

from app.config import current_settings
from app.db import get_database
from app.db import request_session
from app.models import Form
from app.models import Shop
from app.models import ShopDomain
from app.prepared import run
from app.shops import ShopError
from app.shops import find_shop
from app.shops import normalize_shop_domain
from app.storefront import stats
from app.storefront.forms import countries
from app.storefront.forms import storefront_form_json
from app.storefront.rate_limit import client_address
from app.storefront.submissions import Answer
from app.storefront.submissions import accept_submission
from app.storefront.submissions import over_limit
from app.storefront.submissions import read_json_body

bp = Blueprint("storefront", __name__, url_prefix="/storefront")

POPUP_SCRIPT = Path(__file__).parent / "static" / "popup.js"
FORMS_MAX_AGE = 60
SCRIPT_MAX_AGE = 300


def _origin_rule(origin: str | None) -> bool | None:
    """A browser origin may post for a shop when it is one of the shop's storefront origins; the app's own
    origin (the demo storefront it serves) always, no origin never. Decided here, or None: the shop's
    storefront origins decide (``_ORIGIN_OF_SHOP``, in the query that reads the shop)."""
    if not origin:
        return False
    if origin == current_settings().app_url:
        return True
    return None


def _allowed_origin(origin: str | None, shop: Shop | None) -> bool:
    """``_origin_rule`` for ``shop``. Without a shop (a preflight, which carries no body), any installed
    shop's origin is enough; the POST re-checks against its own shop."""
    rule = _origin_rule(origin)
    if rule is not None:
        return rule
    statement = sa.select(_SHOPS.c.id).where(_SHOPS.c.uninstalled_at.is_(None), _ORIGIN_OF_SHOP)
    if shop is not None:
        statement = statement.where(_SHOPS.c.id == shop.id)
    return request_session().scalar(statement.limit(1), {"origin": origin}) is not None


def _with_cors(response: Response, origin: str | None) -> Response:
    response.headers["Vary"] = "Origin"
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def _answer(body: dict[str, Any], status: int, origin: str | None) -> Response:
    response = jsonify(body)
    response.status_code = status
    return _with_cors(response, origin)


def _respond(answer: Answer, origin: str | None) -> Response:
    response = _answer(answer.body, answer.status, origin)
    response.headers.update(answer.headers)
    return response


def _preflight() -> Response:
    """CORS preflight: allow POST with a JSON body from the storefront origins of installed shops."""
    origin = request.headers.get("Origin")
    response = Response(status=204)
    if _allowed_origin(origin, None):
        _with_cors(response, origin)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response.headers["Vary"] = "Origin"
    return response


def installed_shop(domain: Any) -> Shop | None:
    if not isinstance(domain, str) or not domain.strip():
        return None
    shop = find_shop(request_session(), domain)
    return shop if shop is not None and shop.installed else None


@bp.get("/popup.js")
def popup_script() -> Response:
    """The popup script: the same file the Shopify extension ships; cached for 5 minutes, ETag, CORS *."""
    try:
        content = POPUP_SCRIPT.read_bytes()
    except FileNotFoundError:
        abort(404, description="the popup script is not built")
    response = Response(content, mimetype="application/javascript")
    response.set_etag(hashlib.sha256(content).hexdigest()[:32])
    response.headers["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response.make_conditional(request)


@bp.get("/forms")
def list_forms() -> Response:
    """The shop's active forms and the countries the pickers offer; 404 for an unknown or uninstalled shop."""
    shop = installed_shop(request.args.get("shop"))
    origin = request.headers.get("Origin")
    if shop is None:
        return _answer({"ok": False, "error": "unknown shop"}, 404, None)
    forms = request_session().scalars(
        sa.select(Form).where(Form.shop_id == shop.id, Form.active.is_(True)).order_by(Form.id)
    )
    body = {"forms": [storefront_form_json(form) for form in forms], "countries": list(countries())}
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    response = Response(content, mimetype="application/json")
    response.set_etag(hashlib.sha256(content).hexdigest()[:32])
    response.headers["Cache-Control"] = f"public, max-age={FORMS_MAX_AGE}"
    _with_cors(response, origin if _allowed_origin(origin, shop) else None)
    return response.make_conditional(request)


@bp.route("/forms/<int:form_id>/views", methods=["OPTIONS"])
def views_preflight(form_id: int) -> Response:
    """CORS preflight for the view beacon (sent as fetch with keepalive where sendBeacon is missing)."""
    return _preflight()


@bp.post("/forms/<int:form_id>/views")
def count_view(form_id: int) -> Response:
    """Count one view of an active form for today: 204; 404 for an unknown form or shop."""
    origin = request.headers.get("Origin")
    body = read_json_body()
    shop = installed_shop(body.get("shop"))
    if shop is None:
        return _answer({"ok": False, "error": "unknown shop"}, 404, None)
    cors_origin = origin if _allowed_origin(origin, shop) else None
    known = request_session().scalar(sa.select(Form.id).where(Form.shop_id == shop.id, Form.id == form_id))
    if known is None:
        return _answer({"ok": False, "error": "unknown form"}, 404, cors_origin)
    refused = over_limit("views", shop, client_address())
    if refused is not None:
        return _respond(refused, cors_origin)
    request_session().close()
    stats.count(get_database(), form_id, "views")
    return _with_cors(Response(status=204), cors_origin)


@bp.route("/submissions", methods=["OPTIONS"])
def submissions_preflight() -> Response:
    """CORS preflight: allow POST with a JSON body from the storefront origins of installed shops."""
    return _preflight()


@bp.post("/submissions")
def create_submission() -> Response:
    """Accept a popup submission: 200 when accepted (synced or not), 4xx naming what is wrong."""
    origin = request.headers.get("Origin")
    body = read_json_body()
    domain = body.get("shop")
    if not isinstance(domain, str) or not domain.strip():
        return _answer({"ok": False, "errors": {"shop": "is required"}}, 422, None)
    found = _submitting_shop(domain, origin)
    if found is None:
        return _answer({"ok": False, "error": "unknown shop"}, 404, None)
    shop, origin_allowed = found
    cors_origin = origin if origin_allowed else None
    if origin and cors_origin is None:
        return _answer({"ok": False, "error": "this origin may not post for this shop"}, 403, None)
    return _respond(accept_submission(body, shop, client_address()), cors_origin)


@dataclass(frozen=True)
class _ShopOfSubmission:
    id: int
    region: str | None


def _submitting_shop(domain: str, origin: str | None) -> tuple[_ShopOfSubmission, bool] | None:
    """The installed shop and whether ``origin`` may post for it (``_origin_rule``), in one query: the
    hottest route reads no more than it needs, with a statement built once."""
    try:
        _, canonical = normalize_shop_domain(domain)
    except ShopError:
        return None
    rule = _origin_rule(origin)
    params: dict[str, object]
    if rule is None:
        statement, params = _SHOP_AND_ORIGIN, {"domain": canonical, "origin": origin}
    else:
        statement, params = _SHOP_DECIDED_ORIGIN, {"domain": canonical, "allowed": rule}
    autocommit = get_database().autocommit()
    if autocommit is None:
        row = run(request_session().connection(), statement, params).first()
    else:
        with autocommit as connection:
            row = run(connection, statement, params).first()
    if row is None:
        return None
    return _ShopOfSubmission(row[0], row[1]), bool(row[2])


_SHOPS: sa.Table = Shop.__table__  # type: ignore[assignment]
_DOMAINS: sa.Table = ShopDomain.__table__  # type: ignore[assignment]
_INSTALLED_SHOP = (
    _SHOPS.c.domain == sa.bindparam("domain", type_=_SHOPS.c.domain.type),
    _SHOPS.c.uninstalled_at.is_(None),
)
_ORIGIN_OF_SHOP = sa.exists().where(
    _DOMAINS.c.shop_id == _SHOPS.c.id,
    _DOMAINS.c.origin == sa.bindparam("origin", type_=_DOMAINS.c.origin.type),
)
# _origin_rule's two shapes, each built once: decided without the database, or one of the shop's origins.
_SHOP_DECIDED_ORIGIN = sa.select(
    _SHOPS.c.id, _SHOPS.c.region, sa.bindparam("allowed", type_=sa.Boolean())
).where(*_INSTALLED_SHOP)
_SHOP_AND_ORIGIN = sa.select(_SHOPS.c.id, _SHOPS.c.region, _ORIGIN_OF_SHOP).where(*_INSTALLED_SHOP)
