"""CSV in and out of the contact list: ``POST /api/v1/imports`` (pass 1 in the request, pass 2 in the
worker; app/imports.py), ``GET /api/v1/imports/<id>`` and its ``report.csv``, and
``GET /api/v1/contacts/export.csv``. Registered on the admin API blueprint, scoped to ``g.shop``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from flask import Response
from flask import abort
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from flask import stream_with_context

from app.admin.api import bp
from app.auth.admin import require_shop
from app.config import current_settings
from app.contacts import csvio
from app.contacts import queries
from app.contacts import segments
from app.contacts.normalize import FieldError
from app.db import get_database
from app.db import request_session
from app.db import utcnow
from app.imports import MAX_UPLOAD_BYTES
from app.imports import estimated_platform_seconds
from app.imports import import_json
from app.imports import platform_rate
from app.imports import report_rows
from app.imports import save_upload
from app.imports import start_import
from app.imports import upload_folder
from app.models import Contact
from app.models import Import
from app.models import Shop

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("", "false", "0", "no", "off")


def _invalid(field: str, message: str) -> Any:
    return jsonify({"ok": False, "errors": {field: message}}), 422


def _json_for(session: sa.orm.Session, record: Import, shop: Shop) -> dict[str, Any]:
    estimate = None
    if record.write_platform:
        rate = platform_rate(session, shop, current_settings().shopline_requests_per_second)
        estimate = estimated_platform_seconds(record.total, shop.platform, rate)
    return import_json(record, estimate)


@bp.post("/imports")
@require_shop
def create_import() -> Any:
    """A CSV of contacts (multipart ``file``; ``write_platform=true`` also writes the platform customers,
    rule 9) → 202 ``{"id", "status", …}``. The file is checked and counted first: not UTF-8 CSV text, or
    no email or phone column → 422 naming ``file``, and nothing changes."""
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 64 * 1024:
        return _invalid("file", f"is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    choice = (request.form.get("write_platform") or "").strip().lower()
    if choice not in _TRUE + _FALSE:
        return _invalid("write_platform", "must be true or false")
    upload = request.files.get("file")
    if upload is None or (not upload.filename and upload.content_length == 0):
        return _invalid("file", "is required: a CSV file as multipart form data")
    shop = g.shop
    # The request's read session ends before the import's write transaction (as the other writing routes
    # do): it must not hold a snapshot, or on SQLite a read lock, across the commit.
    request_session().close()
    try:
        path = save_upload(upload.stream, upload_folder(current_app.instance_path))
        record = start_import(
            get_database(), shop.id, path, filename=upload.filename, write_platform=choice in _TRUE
        )
    except csvio.FileRefused as error:
        return _invalid(error.field, error.message)
    body = _json_for(request_session(), record, shop)
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/imports/{record.id}"
    return response


def _own_import(import_id: int) -> Import:
    record = request_session().scalar(
        sa.select(Import).where(Import.shop_id == g.shop.id, Import.id == import_id)
    )
    if record is None:
        abort(404, description="no such import")
    return record


@bp.get("/imports/<int:import_id>")
@require_shop
def show_import(import_id: int) -> Any:
    """An import's progress and counts, its first errors (row numbers as a spreadsheet shows them) and,
    with ``write_platform``, the seconds the platform writes take at the shop's rate."""
    record = _own_import(import_id)
    return jsonify(_json_for(request_session(), record, g.shop))


@bp.get("/imports/<int:import_id>/report.csv")
@require_shop
def import_report(import_id: int) -> Any:
    """Every row's outcome as CSV: ``row, outcome, message`` (outcome: created, updated, skipped, error)."""
    _own_import(import_id)
    db = get_database()

    def lines() -> Iterator[str]:
        with db.sessionmaker() as session:
            yield from csvio.csv_lines([("row", "outcome", "message")])
            yield from csvio.csv_lines(report_rows(session, import_id))

    return _csv_response(csvio.utf8_bytes(lines()), f"import-{import_id}-report.csv")


def _csv_response(body: Iterator[bytes], filename: str) -> Response:
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


# The export's columns with the tags as stored (queries.export_rows reads them as JSON text instead).
_EXPORT_COLUMNS = (*queries.EXPORT_COLUMNS[:-1], Contact.tags)


class NoSuchSegment(LookupError):
    """The ``segment`` parameter names no segment of the shop (the list answers 404 for it too)."""


def export_statement(
    session: sa.orm.Session,
    shop_id: int,
    q: str | None = None,
    channel: str | None = None,
    segment: str | None = None,
) -> sa.Select[Any]:
    """The list's filters (``queries.filtered``), as the export's columns. FieldError for a bad filter,
    NoSuchSegment for another shop's or a missing segment."""
    segment_id = segments.parse_segment_id(segment)
    condition = None
    if segment_id is not None:
        condition = segments.segment_filter(session, shop_id, segment_id, utcnow())
        if condition is None:
            raise NoSuchSegment(segment_id)
    return queries.filtered(shop_id, q, channel, segment=condition).with_only_columns(*_EXPORT_COLUMNS)


@bp.get("/contacts/export.csv")
@require_shop
def export_csv() -> Any:
    """The contacts the list shows for ``q``, ``channel`` and ``segment``, as CSV (the contract's columns;
    formula-like cells start with ``'``), streamed."""
    try:
        statement = export_statement(
            request_session(),
            g.shop.id,
            request.args.get("q"),
            request.args.get("channel") or None,
            request.args.get("segment") or None,
        )
    except FieldError as error:
        return _invalid(error.field, error.message)
    except NoSuchSegment:
        abort(404, description="no such segment")
    request_session().close()  # the pages are read in short sessions of their own
    lines = csvio.export_lines(queries.export_rows(get_database(), statement))
    return _csv_response(csvio.utf8_bytes(lines), "contacts.csv")
