"""The merchant admin JSON API (``/api/v1``). Every route is authenticated and scoped to ``g.shop``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import g
from flask import jsonify
from flask import request

from app.auth.admin import require_shop
from app.config import current_settings
from app.contacts import queries
from app.contacts import segments
from app.contacts.normalize import FieldError
from app.contacts.normalize import ValidationError
from app.contacts.normalize import clean_text
from app.contacts.normalize import normalize_country
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_gender
from app.contacts.normalize import normalize_phone
from app.contacts.normalize import parse_birthday
from app.contacts.rules import display_name
from app.contacts.service import MERCHANT_CONSENT_STATES
from app.contacts.service import MerchantService
from app.contacts.service import get_service
from app.db import get_database
from app.db import request_session
from app.db import utcnow
from app.models import Contact
from app.models import ContactEvent
from app.models import CustomerPull
from app.models import DataRequest
from app.pulls import BACKFILL
from app.pulls import RECONCILE
from app.pulls import active_pull
from app.pulls import enqueue_pull
from app.pulls import pull_json

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1")


@bp.after_request
def _api_headers(response: Any) -> Any:
    """The API's answers carry personal data: never cached (a route may say otherwise), never sniffed."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.endpoint != "admin_api.openapi_description":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "name": display_name(contact.first_name, contact.last_name, contact.email),
        "birthday": contact.birthday.isoformat() if contact.birthday else None,
        "gender": contact.gender,
        "country": contact.country,
        "email_consent": contact.email_consent,
        "sms_consent": contact.sms_consent,
        "tags": list(contact.tags or []),
        "source": contact.source,
        "platform_customer_id": contact.platform_customer_id,
        "sync_status": contact.sync_status,
        "sync_detail": contact.sync_detail,
        "created_at": contact.created_at.isoformat(),
        "updated_at": contact.updated_at.isoformat(),
    }


def event_json(event: ContactEvent) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "occurred_at": event.occurred_at.isoformat(), **event.data}


def _field_error(error: FieldError) -> Any:
    response = jsonify({"ok": False, "errors": {error.field: error.message}})
    response.status_code = 422
    return response


@bp.get("/contacts")
@require_shop
def list_contacts() -> Any:
    """The shop's contacts, most recently updated first; ``q`` searches, ``channel`` and ``segment`` filter,
    keyset pages. Another shop's segment is 404."""
    session = request_session()
    try:
        segment_id = segments.parse_segment_id(request.args.get("segment"))
        segment = None
        if segment_id is not None:
            segment = segments.segment_filter(session, g.shop.id, segment_id, utcnow())
            if segment is None:
                abort(404, description="no such segment")
        page = queries.list_contacts(
            session,
            g.shop.id,
            q=request.args.get("q"),
            channel=request.args.get("channel") or None,
            limit=queries.parse_limit(request.args.get("limit")),
            cursor=request.args.get("cursor") or None,
            segment=segment,
        )
    except FieldError as error:
        return _field_error(error)
    return jsonify({"contacts": [contact_json(c) for c in page.contacts], "next_cursor": page.next_cursor})


@bp.get("/contacts/<int:contact_id>")
@require_shop
def get_contact(contact_id: int) -> Any:
    """One contact of the shop with its events, newest first; another shop's contact is 404."""
    session = request_session()
    contact = queries.get_contact(session, g.shop.id, contact_id)
    if contact is None:
        abort(404, description="no such contact")
    body = contact_json(contact)
    body["events"] = [event_json(e) for e in queries.contact_events(session, contact)]
    return jsonify(body)


# --- the merchant's changes: edit, consent, delete (app/contacts/service.py, MerchantService) ------------

MAX_BULK_IDS = 10_000
MAX_TAGS = 250
_EDIT_PARSERS: dict[str, Callable[[Any, str | None], Any]] = {
    "email": lambda v, _region: normalize_email(v),
    "phone": lambda v, region: normalize_phone(v, region),
    "first_name": lambda v, _region: clean_text(v, "first_name"),
    "last_name": lambda v, _region: clean_text(v, "last_name"),
    "birthday": lambda v, _region: parse_birthday(v),
    "gender": lambda v, _region: normalize_gender(v),
    "country": lambda v, _region: normalize_country(v),
}


def _merchant() -> MerchantService:
    return MerchantService(get_service())


def _actor() -> str:
    # Set by require_shop: "api key psk_…" or "shopify user <sub>"; never a credential.
    return str(g.get("actor") or "unknown")


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body


def _invalid(errors: dict[str, str]) -> Any:
    return jsonify({"ok": False, "errors": errors}), 422


def edit_values(body: dict[str, Any], region: str | None) -> dict[str, Any]:
    """The fields a merchant's edit sets, validated as a submission's are (normalize.py); a field given as
    null or blank clears it; fields the API does not edit (id, name, source, …) are ignored, so a Contact
    read from the API can be sent back. ValidationError names every bad field."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, parse in _EDIT_PARSERS.items():
        if name in body:
            try:
                values[name] = parse(body[name], region)
            except FieldError as error:
                errors[error.field] = error.message
    for name in ("email_consent", "sms_consent"):
        if name in body:
            if body[name] in MERCHANT_CONSENT_STATES:
                values[name] = body[name]
            else:
                errors[name] = f"must be one of {', '.join(MERCHANT_CONSENT_STATES)}"
    if "tags" in body:
        try:
            values["tags"] = _tags(body["tags"])
        except FieldError as error:
            errors[error.field] = error.message
    if errors:
        raise ValidationError(errors)
    return values


def _tags(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        raise FieldError("tags", "must be a list of strings")
    if len(raw) > MAX_TAGS:
        raise FieldError("tags", f"must hold at most {MAX_TAGS} tags")
    tags: list[str] = []
    for index, value in enumerate(raw):
        tag = clean_text(value, f"tags[{index}]")
        if tag is None:
            raise FieldError(f"tags[{index}]", "must not be empty")
        if "," in tag:
            # The platforms keep tags as one comma-separated list: a comma would split the tag in two.
            raise FieldError(f"tags[{index}]", "must not contain a comma")
        tags.append(tag)
    return list(dict.fromkeys(tags))


def _ids(body: dict[str, Any]) -> list[int]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise FieldError("ids", "must be a list of contact ids (whole numbers)")
    if len(ids) > MAX_BULK_IDS:
        raise FieldError("ids", f"must hold at most {MAX_BULK_IDS:,} ids")
    # Ids beyond a 64-bit integer are nobody's; dropping them keeps the database from refusing the query.
    return [i for i in ids if 0 < i < 2**63]


def _contact_answer(contact_id: int) -> Any:
    session = request_session()
    session.expire_all()  # read what the write transaction committed
    contact = queries.get_contact(session, g.shop.id, contact_id)
    if contact is None:
        abort(404, description="no such contact")
    return jsonify(contact_json(contact))


@bp.patch("/contacts/<int:contact_id>")
@require_shop
def edit_contact(contact_id: int) -> Any:
    """Edit fields and consent: 200 with the Contact; 422 naming each bad field (an erased person's email or
    phone cannot be put back); 404. An unsubscribe reaches every contact with that email or phone (rule 8);
    the changes go to the platform customer (rule 9)."""
    body = _json_body()
    if queries.get_contact(request_session(), g.shop.id, contact_id) is None:
        abort(404, description="no such contact")
    try:
        values = edit_values(body, g.shop.region)
    except ValidationError as error:
        return _invalid(error.errors)
    shop_id, actor = g.shop.id, _actor()
    request_session().close()  # the edit runs in its own write transaction; hold no read snapshot across it
    try:
        result = _merchant().edit(shop_id, contact_id, values, actor=actor)
    except ValidationError as error:
        return _invalid(error.errors)
    if result is None:
        abort(404, description="no such contact")
    return _contact_answer(contact_id)


@bp.post("/contacts/consent")
@require_shop
def set_contacts_consent() -> Any:
    """Subscribe or unsubscribe one channel of many contacts: ``{"updated": n}``, n the listed contacts that
    changed (other shops' ids are ignored). An unsubscribe reaches every holder of the email or phone."""
    body = _json_body()
    errors: dict[str, str] = {}
    ids: list[int] = []
    try:
        ids = _ids(body)
    except FieldError as error:
        errors[error.field] = error.message
    channel, state = body.get("channel"), body.get("state")
    if channel not in ("email", "sms"):
        errors["channel"] = "must be email or sms"
    if state not in ("subscribed", "unsubscribed"):
        errors["state"] = "must be subscribed or unsubscribed"
    if errors:
        return _invalid(errors)
    shop_id, actor = g.shop.id, _actor()
    request_session().close()
    updated = _merchant().set_consent(shop_id, ids, str(channel), str(state), actor=actor)
    return jsonify({"updated": updated})


@bp.delete("/contacts/<int:contact_id>")
@require_shop
def delete_contact(contact_id: int) -> Any:
    """Delete a contact with its events and waiting platform writes: 204. The platform customer is left
    alone; the deletion is in the audit log."""
    shop_id, actor = g.shop.id, _actor()
    request_session().close()
    if not _merchant().delete(shop_id, [contact_id], actor=actor):
        abort(404, description="no such contact")
    return "", 204


@bp.post("/contacts/delete")
@require_shop
def delete_contacts() -> Any:
    """Delete many contacts: ``{"deleted": n}`` (other shops' ids are ignored)."""
    try:
        ids = _ids(_json_body())
    except FieldError as error:
        return _field_error(error)
    shop_id, actor = g.shop.id, _actor()
    request_session().close()
    return jsonify({"deleted": _merchant().delete(shop_id, ids, actor=actor)})


@bp.post("/contacts/<int:contact_id>/retry-sync")
@require_shop
def retry_contact_sync(contact_id: int) -> Any:
    """Queue this contact's platform write again (a failed or conflicting one): 202."""
    from app.jobs import requeue_failed

    if queries.get_contact(request_session(), g.shop.id, contact_id) is None:
        abort(404, description="no such contact")
    request_session().close()
    queued = requeue_failed(get_database(), g.shop.id, [contact_id])
    return jsonify({"ok": True, "queued": queued}), 202


@bp.post("/contacts/retry-sync")
@require_shop
def retry_all_sync() -> Any:
    """Queue every failed platform write of the shop again: 202."""
    from app.jobs import requeue_failed

    shop_id = g.shop.id
    request_session().close()
    return jsonify({"ok": True, "queued": requeue_failed(get_database(), shop_id)}), 202


@bp.get("/data-requests")
@require_shop
def list_data_requests() -> Any:
    """The shop's privacy data requests (``customers/data_request``), newest first, each with its date."""
    rows = request_session().scalars(
        sa.select(DataRequest).where(DataRequest.shop_id == g.shop.id).order_by(DataRequest.id.desc())
    )
    return jsonify(
        {
            "data_requests": [
                {"id": r.id, "requested_at": r.requested_at.isoformat(), "subject": r.subject} for r in rows
            ]
        }
    )


@bp.get("/data-requests/<int:request_id>")
@require_shop
def download_data_request(request_id: int) -> Any:
    """One data request's export: the person's data as a JSON file to hand to them."""
    row = request_session().scalar(
        sa.select(DataRequest).where(DataRequest.shop_id == g.shop.id, DataRequest.id == request_id)
    )
    if row is None:
        abort(404, description="no such data request")
    body = {"requested_at": row.requested_at.isoformat(), "subject": row.subject, **row.export}
    response = jsonify(body)
    response.headers["Content-Disposition"] = f'attachment; filename="data-request-{row.id}.json"'
    return response


@bp.get("/customer-pulls")
@require_shop
def list_customer_pulls() -> Any:
    """The shop's backfills and reconciliations, newest first, with their progress (the last 50)."""
    rows = request_session().scalars(
        sa.select(CustomerPull)
        .where(CustomerPull.shop_id == g.shop.id)
        .order_by(CustomerPull.id.desc())
        .limit(50)
    )
    return jsonify({"pulls": [pull_json(row) for row in rows]})


@bp.get("/customer-pulls/<int:pull_id>")
@require_shop
def show_customer_pull(pull_id: int) -> Any:
    row = request_session().scalar(
        sa.select(CustomerPull).where(CustomerPull.shop_id == g.shop.id, CustomerPull.id == pull_id)
    )
    if row is None:
        abort(404, description="no such customer pull")
    return jsonify(pull_json(row))


@bp.post("/customer-pulls")
@require_shop
def start_customer_pull() -> Any:
    """Read the platform's customers again now: ``{"kind": "backfill"}`` (every customer) or
    ``{"kind": "reconcile"}`` (those updated since the last pull). 202 with the pull; 409 while one runs."""
    body = request.get_json(silent=True)
    kind = body.get("kind") if isinstance(body, dict) else None
    if kind not in (BACKFILL, RECONCILE):
        response = jsonify({"ok": False, "errors": {"kind": "must be backfill or reconcile"}})
        response.status_code = 422
        return response
    shop_id = g.shop.id
    request_session().close()
    with get_database().write_transaction() as session:
        if active_pull(session, shop_id) is not None:
            return jsonify({"ok": False, "error": "a pull of this shop is already under way"}), 409
        pull = enqueue_pull(session, shop_id, kind, utcnow())
        body = pull_json(pull)
    return jsonify(body), 202


@bp.get("/openapi.json")
def openapi_description() -> Any:
    """The OpenAPI 3.1 description of this API and the storefront routes (public: it holds no data)."""
    from app.admin.openapi import build_description

    return jsonify(build_description(current_settings().app_url))


# The admin API's other routes live in their own modules, registered on ``bp`` when imported here.
from app.admin import embed as _embed  # noqa: E402, F401 - /api/v1/storefront-embed
from app.admin import forms as _forms  # noqa: E402, F401 - /api/v1/forms
from app.admin import imports as _imports  # noqa: E402, F401 - /api/v1/imports, /api/v1/contacts/export.csv
from app.admin import segments as _segments  # noqa: E402, F401 - /api/v1/segments
from app.admin import shop_status as _shop_status  # noqa: E402, F401 - /api/v1/shop
from app.admin import tracking as _tracking  # noqa: E402, F401 - /api/v1/tracking-links
