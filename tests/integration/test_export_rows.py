"""The export reader (``queries.export_rows``: Core rows, tags as JSON text) writes exactly the CSV that the
plain reading below (ORM mappings, one page) writes, page boundaries and filters included."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.admin.imports import export_statement
from app.contacts import queries
from app.contacts.csvio import export_lines
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.models import Contact
from app.models import Shop
from tests.conftest import add_shop


def mapping_rows(db: Database, statement: sa.Select[Any]) -> list[dict[str, Any]]:
    """The reference: every selected contact in one plain ORM read, as mappings."""
    with db.sessionmaker() as session:
        return [dict(row) for row in session.execute(statement.order_by(Contact.id)).mappings()]


RECORDS = [
    Collected(email="ann@example.com", first_name="Ann", last_name="Lee", tags=("vip", "b2b")),
    Collected(phone="+14155552671", first_name="=cmd|' /C calc'!A0", last_name="@SUM(1)"),
    Collected(email="-dash@example.com", birthday=date(1990, 4, 1), gender="female", country="FR"),
    Collected(email="bo@example.com", phone="+14155552672", email_consent=ConsentIntent.SUBSCRIBE),
    Collected(email="cy@example.com", last_name='Quote "me", please', tags=("a,b",)),
    Collected(email="dee@example.com", first_name="Dee", sms_consent=ConsentIntent.SUBSCRIBE),
    Collected(email="eve@example.com", first_name="Ève", tags=("ünï",)),
]


@pytest.mark.parametrize(("q", "channel"), [(None, None), ("example", None), (None, "sms"), ("nobody", None)])
def test_the_fast_reader_writes_the_same_csv(
    app: Flask, db: Database, service: ContactService, shop: Shop, q: str | None, channel: str | None
) -> None:
    service.sync_batch(shop.id, RECORDS, source=Source.IMPORT)
    other = add_shop(app, "other.myshopify.com")
    service.sync_batch(other.id, RECORDS, source=Source.IMPORT)
    with db.sessionmaker() as session:
        statement = export_statement(session, shop.id, q, channel)
    expected = "".join(export_lines(mapping_rows(db, statement)))
    for page in (1, 3, queries.EXPORT_PAGE):
        assert "".join(export_lines(queries.export_rows(db, statement, page=page))) == expected
    if q is None and channel is None:
        assert expected.count("\r\n") == len(RECORDS) + 1  # the header and one line per contact, this shop's
        assert "'=cmd|' /C calc'!A0" in expected
        assert "'-dash@example.com" in expected
        assert '"vip, b2b"' in expected
