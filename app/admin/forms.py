"""``/api/v1/forms``: the shop's popup forms (create, list, read, edit, delete), with their last 30 days'
views, submissions and conversion rate. Registered on the admin API blueprint; every query is scoped to
the authenticated shop, so another shop's form answers 404.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort
from flask import g
from flask import jsonify
from flask import request

from app.admin.api import bp
from app.auth.admin import require_shop
from app.contacts.normalize import ValidationError
from app.db import get_database
from app.db import request_session
from app.db import utcnow
from app.models import Form
from app.storefront.forms import form_values
from app.storefront.forms import storefront_form_json
from app.storefront.forms import validate_form
from app.storefront.stats import recent_stats


def form_json(form: Form, stats: dict[str, Any]) -> dict[str, Any]:
    """The storefront's form shape (docs/storefront.md) plus what only the merchant sees."""
    return {
        **storefront_form_json(form),
        "active": form.active,
        "created_at": form.created_at.isoformat(),
        "updated_at": form.updated_at.isoformat(),
        "stats": stats,
    }


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body


def _invalid(error: ValidationError) -> Any:
    return jsonify({"ok": False, "errors": error.errors}), 422


def _shop_form(form_id: int) -> Form:
    form = request_session().scalar(sa.select(Form).where(Form.shop_id == g.shop.id, Form.id == form_id))
    if form is None:
        abort(404, description="no such form")
    return form


def _one(form_id: int, status: int = 200) -> Any:
    session = request_session()
    session.expire_all()  # read what the write transaction committed
    form = _shop_form(form_id)
    return jsonify(form_json(form, recent_stats(session, [form.id])[form.id])), status


@bp.get("/forms")
@require_shop
def list_forms() -> Any:
    """The shop's forms, oldest first, each with its last 30 days' figures."""
    session = request_session()
    forms = list(session.scalars(sa.select(Form).where(Form.shop_id == g.shop.id).order_by(Form.id)))
    stats = recent_stats(session, [form.id for form in forms])
    return jsonify({"forms": [form_json(form, stats[form.id]) for form in forms]})


@bp.post("/forms")
@require_shop
def create_form() -> Any:
    """Create a form: 201 with the form; 422 naming each bad field."""
    try:
        values = validate_form(_body())
    except ValidationError as error:
        return _invalid(error)
    shop_id = g.shop.id
    request_session().close()
    now = utcnow()
    with get_database().write_transaction() as session:
        form = Form(shop_id=shop_id, created_at=now, updated_at=now, **values)
        session.add(form)
        session.flush()
        form_id = form.id
    return _one(form_id, 201)


@bp.get("/forms/<int:form_id>")
@require_shop
def get_form(form_id: int) -> Any:
    """One form of the shop with its last 30 days' figures; another shop's form is 404."""
    return _one(form_id)


@bp.patch("/forms/<int:form_id>")
@require_shop
def update_form(form_id: int) -> Any:
    """Change some of a form's fields: 200 with the form; 422 naming each bad field; 404."""
    body = _body()
    current = form_values(_shop_form(form_id))
    try:
        values = validate_form(body, current)
    except ValidationError as error:
        return _invalid(error)
    shop_id = g.shop.id
    request_session().close()
    with get_database().write_transaction() as session:
        form = session.scalar(sa.select(Form).where(Form.shop_id == shop_id, Form.id == form_id))
        if form is None:
            abort(404, description="no such form")
        changed = {name: value for name, value in values.items() if getattr(form, name) != value}
        for name, value in changed.items():
            setattr(form, name, value)
        if changed:
            form.updated_at = utcnow()
    return _one(form_id)


@bp.delete("/forms/<int:form_id>")
@require_shop
def delete_form(form_id: int) -> Any:
    """Delete a form and its figures: 204. Contacts it collected keep its tag."""
    shop_id = g.shop.id
    request_session().close()
    with get_database().write_transaction() as session:
        deleted = session.execute(sa.delete(Form).where(Form.shop_id == shop_id, Form.id == form_id))
    if not deleted.rowcount:
        abort(404, description="no such form")
    return "", 204
