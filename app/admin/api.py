"""The merchant admin JSON API (``/api/v1``). Every route is authenticated and scoped to ``g.shop``."""

from __future__ import annotations

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
from app.contacts.normalize import FieldError
from app.contacts.rules import display_name
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
    """The shop's contacts, most recently updated first; ``q`` searches, ``channel`` filters, keyset pages."""
    try:
        page = queries.list_contacts(
            request_session(),
            g.shop.id,
            q=request.args.get("q"),
            channel=request.args.get("channel") or None,
            limit=queries.parse_limit(request.args.get("limit")),
            cursor=request.args.get("cursor") or None,
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
from app.admin import tracking as _tracking  # noqa: E402, F401 - /api/v1/tracking-links
