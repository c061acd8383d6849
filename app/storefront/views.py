"""The storefront's routes: public, no login, called by the popup script from the shop's own pages.

A submission is validated, synced by the rules and committed before the answer; the platform write follows
through the outbox. The storefront never learns whether a contact was created, updated or left alone.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import abort
from flask import jsonify
from flask import request

from app.config import current_settings
from app.contacts.normalize import ValidationError
from app.contacts.normalize import collect_submission
from app.contacts.service import get_service
from app.db import request_session
from app.enums import Source
from app.models import Shop
from app.models import ShopDomain
from app.shops import find_shop

bp = Blueprint("storefront", __name__, url_prefix="/storefront")

MAX_BODY_BYTES = 64 * 1024
_EVIDENCE_TEXT_LIMIT = 2048


def _allowed_origin(origin: str | None, shop: Shop | None) -> bool:
    """A browser origin may post for a shop when it is one of the shop's storefront origins.

    The app's own origin (the demo storefront it serves) is allowed too. Without a shop (a preflight, which
    carries no body), any installed shop's origin is enough; the POST re-checks against its own shop.
    """
    if not origin:
        return False
    if origin == current_settings().app_url:
        return True
    statement = (
        sa.select(ShopDomain.id)
        .join(Shop, Shop.id == ShopDomain.shop_id)
        .where(ShopDomain.origin == origin, Shop.uninstalled_at.is_(None))
    )
    if shop is not None:
        statement = statement.where(ShopDomain.shop_id == shop.id)
    return request_session().scalar(statement.limit(1)) is not None


def _with_cors(response: Response, origin: str | None) -> Response:
    response.headers["Vary"] = "Origin"
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def _answer(body: dict[str, Any], status: int, origin: str | None) -> Response:
    response = jsonify(body)
    response.status_code = status
    return _with_cors(response, origin)


@bp.route("/submissions", methods=["OPTIONS"])
def submissions_preflight() -> Response:
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


@bp.post("/submissions")
def create_submission() -> Response:
    """Accept a popup submission: 200 when accepted (synced or not), 4xx naming what is wrong."""
    origin = request.headers.get("Origin")
    request.max_content_length = MAX_BODY_BYTES
    raw = request.get_data(cache=False)  # 413 past the limit
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        abort(400, description="the body must be a JSON object")
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")

    domain = body.get("shop")
    if not isinstance(domain, str) or not domain.strip():
        return _answer({"ok": False, "errors": {"shop": "is required"}}, 422, None)
    session = request_session()
    shop = find_shop(session, domain)
    if shop is None or not shop.installed:
        return _answer({"ok": False, "error": "unknown shop"}, 404, None)
    cors_origin = origin if _allowed_origin(origin, shop) else None
    if origin and cors_origin is None:
        return _answer({"ok": False, "error": "this origin may not post for this shop"}, 403, None)

    try:
        collected = collect_submission(body, shop.region)
    except ValidationError as error:
        return _answer({"ok": False, "errors": error.errors}, 422, cors_origin)
    shop_id = shop.id
    session.close()  # the sync runs in its own write transaction; hold no read snapshot across it

    get_service().sync(shop_id, collected, source=Source.FORM, evidence=_evidence(body))
    return _answer({"ok": True}, 200, cors_origin)


def _evidence(body: dict[str, Any]) -> dict[str, Any]:
    """The consent evidence a submission keeps on its event: form, text shown, page, time, client."""

    def text(value: Any) -> str | None:
        return value[:_EVIDENCE_TEXT_LIMIT] if isinstance(value, str) and value.strip() else None

    evidence = {
        "form_id": text(body.get("form_id")),
        "consent_text": text(body.get("consent_text")),
        "page_url": text(body.get("page_url")) or text(request.headers.get("Referer")),
        "client_ip": request.remote_addr,
        "email_consent": body.get("email_consent") is True,
        "sms_consent": body.get("sms_consent") is True,
    }
    return {key: value for key, value in evidence.items() if value is not None}
