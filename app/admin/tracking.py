"""``POST /api/v1/tracking-links`` (one recipient, or up to 1,000) and ``POST /api/v1/tracking-links.csv``
(a recipients file in, the same file with its URLs out), for any sending tool to merge in. Registered on the
admin API blueprint; links are made for the authenticated shop only.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response
from flask import abort
from flask import current_app
from flask import g
from flask import jsonify
from flask import request

from app.admin.api import bp
from app.auth.admin import require_shop
from app.config import current_settings
from app.contacts.csvio import neutralise
from app.contacts.csvio import unneutralise
from app.contacts.normalize import ValidationError
from app.db import utcnow
from app.tracking.links import MAX_RECIPIENTS
from app.tracking.links import link_urls
from app.tracking.links import parse_recipient

CSV_COLUMNS = ("email", "phone", "first_name", "last_name", "message_id", "url", "channel")
URL_COLUMNS = ("open_url", "click_url", "unsubscribe_url")
CSV_MAX_BYTES = 20 * 1024 * 1024
CSV_MAX_ROWS = 100_000


def _invalid(errors: dict[str, str]) -> Any:
    return jsonify({"ok": False, "errors": errors}), 422


@bp.post("/tracking-links")
@require_shop
def create_tracking_links() -> Any:
    """``{"channel", "email"?, "phone"?, "first_name"?, "last_name"?, "message_id", "url"?}`` → 201 with
    ``{"open_url", "click_url"?, "unsubscribe_url"}``; ``{"recipients": [...]}`` (≤ 1,000) → 201 with
    ``{"links": [...]}`` in the same order. Any invalid recipient: 422 naming ``recipients[i].field``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    keyring = current_app.extensions["popsync.keyring"]
    app_url = current_settings().app_url
    now = utcnow()
    if "recipients" not in body:
        try:
            link = parse_recipient(body, shop_id=g.shop.id, region=g.shop.region, now=now)
        except ValidationError as error:
            return _invalid(error.errors)
        return jsonify(link_urls(keyring, app_url, link)), 201
    recipients = body["recipients"]
    if not isinstance(recipients, list) or not recipients:
        return _invalid({"recipients": "must be a non-empty list of recipient objects"})
    if len(recipients) > MAX_RECIPIENTS:
        return _invalid({"recipients": f"must hold at most {MAX_RECIPIENTS:,} recipients"})
    errors: dict[str, str] = {}
    links = []
    for index, recipient in enumerate(recipients):
        prefix = f"recipients[{index}]."
        if not isinstance(recipient, dict):
            errors[f"recipients[{index}]"] = "must be an object"
            continue
        try:
            links.append(
                parse_recipient(recipient, shop_id=g.shop.id, region=g.shop.region, now=now, prefix=prefix)
            )
        except ValidationError as error:
            errors.update(error.errors)
    if errors:
        return _invalid(errors)
    return jsonify({"links": [link_urls(keyring, app_url, link) for link in links]}), 201


@bp.post("/tracking-links.csv")
@require_shop
def create_tracking_links_csv() -> Any:
    """Multipart ``file``: a CSV with a header row of any of ``email, phone, first_name, last_name,
    message_id, url, channel`` (headers matched case-insensitively; other columns are kept as they are).
    Optional form fields ``message_id`` and ``url`` apply to rows that leave them empty; ``channel``
    defaults to ``email`` when the row has an email, else ``sms``. Answers the same rows as CSV with
    ``open_url, click_url, unsubscribe_url`` appended (formula-safe cells). Any invalid row: 422 naming
    ``rows[n].field`` with ``n`` the row number a spreadsheet shows (the header is row 1)."""
    upload = request.files.get("file")
    if upload is None:
        return _invalid({"file": "attach the recipients as a multipart field named file"})
    raw = upload.stream.read(CSV_MAX_BYTES + 1)
    if len(raw) > CSV_MAX_BYTES:
        return _invalid({"file": f"must be at most {CSV_MAX_BYTES // (1024 * 1024)} MB"})
    try:
        text = raw.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error):
        return _invalid({"file": "must be CSV text in UTF-8"})
    if not rows or not any(cell.strip() for cell in rows[0]):
        return _invalid({"file": "needs a header row"})
    header = [cell.strip() for cell in rows[0]]
    columns = {name.lower(): index for index, name in reversed(list(enumerate(header)))}
    if "email" not in columns and "phone" not in columns:
        return _invalid({"file": "needs an email or a phone column"})
    data = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    if len(data) > CSV_MAX_ROWS:
        return _invalid({"file": f"must hold at most {CSV_MAX_ROWS:,} recipients"})
    defaults = {"message_id": request.form.get("message_id", ""), "url": request.form.get("url", "")}
    keyring = current_app.extensions["popsync.keyring"]
    app_url = current_settings().app_url
    now = utcnow()
    errors: dict[str, str] = {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise(cell) for cell in [*header, *URL_COLUMNS]])
    line = 1
    for row in rows[1:]:
        line += 1
        if not any(cell.strip() for cell in row):
            continue
        values: dict[str, Any] = {}
        for name in CSV_COLUMNS:
            cell = row[columns[name]] if name in columns and columns[name] < len(row) else ""
            values[name] = unneutralise(cell).strip() or defaults.get(name) or None
        if not values["channel"]:
            values["channel"] = "email" if values["email"] else "sms"
        try:
            link = parse_recipient(
                values, shop_id=g.shop.id, region=g.shop.region, now=now, prefix=f"rows[{line}]."
            )
        except ValidationError as error:
            if len(errors) < 100:  # enough to fix the file; a file with thousands of bad rows says so
                errors.update(error.errors)
            continue
        urls = link_urls(keyring, app_url, link)
        padded = [*row, *[""] * (len(header) - len(row))]
        writer.writerow(
            [neutralise(cell) for cell in [*padded, *(urls.get(name, "") for name in URL_COLUMNS)]]
        )
    if errors:
        return _invalid(errors)
    return Response(
        out.getvalue(),
        status=201,
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="tracking-links.csv"',
            "Cache-Control": "no-store",
        },
    )
