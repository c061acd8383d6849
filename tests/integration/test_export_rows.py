"""The export reader (``queries.export_rows``: Core rows, tags as JSON text) writes exactly the CSV that the
plain reading below (ORM mappings, one page) writes, page boundaries and filters included."""

from __future__ import annotations

import threading
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
from app.crypto import Keyring
from app.db import Database
from app.enums import Source
from app.models import Contact
from app.models import Shop
from app.shops import register_shop
from tests.conftest import TEST_SECRET_KEY
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


@pytest.mark.postgresql
def test_the_next_page_read_on_another_thread_changes_nothing(fresh_database: sa.Engine) -> None:
    """On PostgreSQL with a pool (not the tests' one bound connection) the next page is read while the
    caller writes this one: the same CSV at every page size, and a download stopped early ends at once."""
    db = Database(str(fresh_database.url), engine=fresh_database)
    assert db.parallel_transactions
    keyring = Keyring(TEST_SECRET_KEY)
    with db.write_transaction() as session:
        shop = register_shop(session, keyring, platform="shopify", domain="pages.myshopify.com", token="t")
    ContactService(db, keyring).sync_batch(shop.id, RECORDS, source=Source.IMPORT)
    with db.sessionmaker() as session:
        statement = export_statement(session, shop.id)
    expected = "".join(export_lines(mapping_rows(db, statement)))
    assert expected.count("\r\n") == len(RECORDS) + 1
    for page in (1, 2, 3, len(RECORDS), queries.EXPORT_PAGE):
        assert "".join(export_lines(queries.export_rows(db, statement, page=page))) == expected
    rows = queries.export_rows(db, statement, page=1)
    assert next(rows)[1] == "ann@example.com"
    rows.close()  # the client went away: the page being read ahead is waited for, nothing is left running
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("popsync-export")]
