"""``/api/v1/segments``: the shop's saved contact filters (create, list, read, edit, delete), each with its
live count. Registered on the admin API blueprint; every query is scoped to the authenticated shop, so
another shop's segment answers 404. The conditions and their validation: ``app/contacts/segments.py``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort
from flask import g
from flask import jsonify
from flask import request
from sqlalchemy.orm import Session

from app.admin.api import bp
from app.auth.admin import require_shop
from app.contacts.normalize import ValidationError
from app.contacts.segments import SegmentSpec
from app.contacts.segments import compile_segment
from app.contacts.segments import conditions_json
from app.contacts.segments import count_contacts
from app.contacts.segments import find_segment
from app.contacts.segments import segment_json
from app.contacts.segments import spec_of
from app.contacts.segments import validate_segment
from app.db import get_database
from app.db import request_session
from app.db import utcnow
from app.models import Form
from app.models import Segment


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body


def _invalid(error: ValidationError) -> Any:
    return jsonify({"ok": False, "errors": error.errors}), 422


def _json(session: Session, segment: Segment) -> dict[str, Any]:
    count = count_contacts(session, segment.shop_id, compile_segment(spec_of(segment), utcnow()))
    return segment_json(segment, count)


def _shop_segment(session: Session, segment_id: int) -> Segment:
    segment = find_segment(session, g.shop.id, segment_id)
    if segment is None:
        abort(404, description="no such segment")
    return segment


def _check_forms(session: Session, shop_id: int, spec: SegmentSpec) -> None:
    """A form condition must name one of the shop's forms (a form deleted later simply matches nobody)."""
    wanted = {i: c.value for i, c in enumerate(spec.conditions) if c.field == "form"}
    if not wanted:
        return
    known = set(
        session.scalars(sa.select(Form.id).where(Form.shop_id == shop_id, Form.id.in_(set(wanted.values()))))
    )
    errors = {
        f"conditions[{index}].value": "no such form"
        for index, form_id in wanted.items()
        if form_id not in known
    }
    if errors:
        raise ValidationError(errors)


def _one(segment_id: int, status: int = 200) -> Any:
    session = request_session()
    session.expire_all()  # read what the write transaction committed
    return jsonify(_json(session, _shop_segment(session, segment_id))), status


@bp.get("/segments")
@require_shop
def list_segments() -> Any:
    """The shop's segments, oldest first, each with its live count."""
    session = request_session()
    rows = session.scalars(sa.select(Segment).where(Segment.shop_id == g.shop.id).order_by(Segment.id))
    return jsonify({"segments": [_json(session, segment) for segment in rows]})


@bp.post("/segments")
@require_shop
def create_segment() -> Any:
    """Create a segment: 201 with it and its count; 422 naming each bad part (``conditions[2].value``)."""
    body = _body()
    try:
        spec = validate_segment(body)
        _check_forms(request_session(), g.shop.id, spec)
    except ValidationError as error:
        return _invalid(error)
    shop_id = g.shop.id
    request_session().close()
    now = utcnow()
    with get_database().write_transaction() as session:
        segment = Segment(
            shop_id=shop_id,
            name=spec.name,
            match=spec.match,
            conditions=conditions_json(spec.conditions),
            created_at=now,
            updated_at=now,
        )
        session.add(segment)
        session.flush()
        segment_id = segment.id
    return _one(segment_id, 201)


@bp.get("/segments/<int:segment_id>")
@require_shop
def get_segment(segment_id: int) -> Any:
    """One segment of the shop with its live count; another shop's segment is 404."""
    return _one(segment_id)


@bp.patch("/segments/<int:segment_id>")
@require_shop
def update_segment(segment_id: int) -> Any:
    """Change a segment's name, match or conditions (the list is replaced whole): 200; 422; 404."""
    body = _body()
    session = request_session()
    current = spec_of(_shop_segment(session, segment_id))
    try:
        spec = validate_segment(body, current)
        _check_forms(session, g.shop.id, spec)
    except ValidationError as error:
        return _invalid(error)
    shop_id = g.shop.id
    session.close()
    with get_database().write_transaction() as session:
        segment = find_segment(session, shop_id, segment_id)
        if segment is None:
            abort(404, description="no such segment")
        if spec != spec_of(segment):
            segment.name = spec.name
            segment.match = spec.match
            segment.conditions = conditions_json(spec.conditions)
            segment.updated_at = utcnow()
    return _one(segment_id)


@bp.delete("/segments/<int:segment_id>")
@require_shop
def delete_segment(segment_id: int) -> Any:
    """Delete a segment (its contacts stay): 204; 404."""
    shop_id = g.shop.id
    request_session().close()
    with get_database().write_transaction() as session:
        deleted = session.execute(
            sa.delete(Segment).where(Segment.shop_id == shop_id, Segment.id == segment_id)
        )
    if not deleted.rowcount:
        abort(404, description="no such segment")
    return "", 204
