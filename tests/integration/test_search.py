"""The contact list's ``q`` on a real database (SQLite and PostgreSQL), with the search indexes of migration
0010: the contract's semantics (part of a name or the email in any case, or the digits of the phone), for
the cases of the benchmark's mix, and the same pages whichever way ``list_contacts`` finds them — the
recent window, the trigram prefilter, or neither (the plain exact condition, i.e. no index)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.contacts import queries
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.db import utcnow
from app.enums import Source
from app.models import Contact
from app.models import Shop
from tests.conftest import add_shop

NOW = utcnow()
PEOPLE: list[dict[str, Any]] = [
    {"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "phone": "+14155552671"},
    {"first_name": "ANNA", "last_name": "Müller", "email": "anna.mueller@gmail.com", "phone": None},
    {"first_name": "Joan", "last_name": "Nguyen", "email": None, "phone": "+442079460958"},
    {"first_name": "Jo", "last_name": None, "email": "jo@gmail.com", "phone": None},
    {"first_name": None, "last_name": "O'Brien", "email": "obrien@example.ie", "phone": "+14155550000"},
    {"first_name": "Zoë", "last_name": "100%_real", "email": "zoe@proton.me", "phone": None},
    {"first_name": None, "last_name": None, "email": None, "phone": "+33612345678"},
    {"first_name": "Lee", "last_name": "Ann", "email": "lee.ann@gmail.com", "phone": "+14155552672"},
    {"first_name": "Mary", "last_name": "Smith", "email": "mary.smith@yahoo.com", "phone": "+12125550199"},
    {"first_name": "Qi", "last_name": "Xu", "email": "qx@example.org", "phone": None},
    {"first_name": "Émile", "last_name": "Łukasz", "email": "emile@example.fr", "phone": None},
]
NEEDLES = [
    "a",
    "an",
    "AN",
    "Ann",
    "lee",
    "LEE",
    "gmail",
    "ann@example.com",
    "mary.smith@yahoo.com",
    "Nguyen",
    "müller",
    "MÜLLER",
    "zoë",
    "ZOË",
    "émile",
    "ÉMILE",
    "łukasz",
    "4155",
    "415555",
    "(415) 555-2671",
    "+44 20 7946",
    "0958",
    "+1",
    "7",
    "n n",
    "%",
    "_",
    "100%",
    "%_r",
    "'",
    "o'brien",
    "qx",
    "zz",
    "nobody-has-this",
    " ann ",
]


def _seed(db: Database, shop_id: int, people: list[dict[str, Any]]) -> None:
    with db.write_transaction() as session:
        for index, person in enumerate(people):
            moment = NOW - timedelta(minutes=index)
            session.add(
                Contact(
                    shop_id=shop_id,
                    source="import",
                    created_at=moment,
                    updated_at=moment,
                    tags=[],
                    pending_fields=[],
                    pending_tags=[],
                    **person,
                )
            )


@pytest.fixture
def seeded(app: Flask, db: Database, shop: Shop) -> Shop:
    _seed(db, shop.id, PEOPLE)
    # Another shop with the same people: its contacts never show up in the first shop's search.
    other = add_shop(app, "other.myshopify.com")
    _seed(db, other.id, PEOPLE)
    return shop


def _reference(db: Database, shop_id: int, q: str, channel: str | None) -> list[int]:
    """Every match in the list's order, by the exact condition alone (no window, no index)."""
    with db.sessionmaker() as session:
        statement = queries.filtered(shop_id, q, channel).order_by(
            Contact.updated_at.desc(), Contact.id.desc()
        )
        return [contact.id for contact in session.scalars(statement)]


def _walk(db: Database, shop_id: int, q: str, channel: str | None, limit: int) -> list[int]:
    """Every page of the list, following the cursors."""
    ids: list[int] = []
    cursor = None
    with db.sessionmaker() as session:
        while True:
            page = queries.list_contacts(session, shop_id, q=q, channel=channel, limit=limit, cursor=cursor)
            ids += [contact.id for contact in page.contacts]
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor


def _names(db: Database, shop_id: int, q: str, channel: str | None = None) -> set[str]:
    with db.sessionmaker() as session:
        page = queries.list_contacts(session, shop_id, q=q, channel=channel, limit=50)
        return {c.email or c.phone or "" for c in page.contacts}


@pytest.mark.parametrize("window", [1, 3, 5000])
@pytest.mark.parametrize("channel", [None, "email", "sms"])
def test_every_way_of_finding_a_page_gives_the_exact_matches_in_order(
    db: Database, seeded: Shop, monkeypatch: pytest.MonkeyPatch, window: int, channel: str | None
) -> None:
    # A window of 1 or 3 contacts sends almost every search to the second step (the trigram prefilter).
    monkeypatch.setattr(queries, "RECENT_WINDOW", window)
    for q in NEEDLES:
        expected = _reference(db, seeded.id, q, channel)
        for limit in (1, 2, 50):
            assert _walk(db, seeded.id, q, channel, limit) == expected, (q, channel, limit)


def test_the_contract_semantics(db: Database, seeded: Shop) -> None:
    # Any case, any part of a first or last name or the email.
    assert _names(db, seeded.id, "lee") == {"ann@example.com", "lee.ann@gmail.com"}
    assert _names(db, seeded.id, "LEE") == {"ann@example.com", "lee.ann@gmail.com"}
    assert {"anna.mueller@gmail.com", "+442079460958"} <= _names(db, seeded.id, "an")  # Joan: a phone only
    assert _names(db, seeded.id, "gmail") == {"anna.mueller@gmail.com", "jo@gmail.com", "lee.ann@gmail.com"}
    # The digits of the phone, however the needle is written.
    assert _names(db, seeded.id, "(415) 555-2671") == {"ann@example.com"}
    assert _names(db, seeded.id, "4155") == {"ann@example.com", "obrien@example.ie", "lee.ann@gmail.com"}
    assert _names(db, seeded.id, "+44 20 7946") == {"+442079460958"}
    assert _names(db, seeded.id, "7946", channel="email") == set()
    # One or two characters search too (no trigram index helps; the exact condition does).
    assert _names(db, seeded.id, "qx") == {"qx@example.org"}
    assert {"jo@gmail.com", "+442079460958"} <= _names(db, seeded.id, "jo")
    # Never across two fields: "n n" is in "Joan Nguyen" only when the names are put together.
    assert _names(db, seeded.id, "n n") == set()
    # LIKE's own characters are plain characters.
    assert _names(db, seeded.id, "100%") == {"zoe@proton.me"}
    assert _names(db, seeded.id, "%") == {"zoe@proton.me"}
    assert _names(db, seeded.id, "_") == {"zoe@proton.me"}
    assert _names(db, seeded.id, "nobody-has-this") == set()
    # Every letter's case, not only ASCII's (SQLite's own lower() and LIKE fold ASCII only).
    for needle in ("émile", "Émile", "ÉMILE", "łukasz", "ŁUKASZ", "mile"):
        assert _names(db, seeded.id, needle) == {"emile@example.fr"}, needle
    for needle in ("müller", "MÜLLER", "Müller"):
        assert _names(db, seeded.id, needle) == {"anna.mueller@gmail.com"}, needle
    assert _names(db, seeded.id, "ZOË") == {"zoe@proton.me"}


def test_an_exact_email_and_a_rare_name_go_through_the_index(
    db: Database, seeded: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "RECENT_WINDOW", 1)
    assert _names(db, seeded.id, "mary.smith@yahoo.com") == {"mary.smith@yahoo.com"}
    assert _names(db, seeded.id, "Nguyen") == {"+442079460958"}
    assert _names(db, seeded.id, "2125550199") == {"mary.smith@yahoo.com"}
    assert _names(db, seeded.id, "ŁUKASZ") == {"emile@example.fr"}  # the index holds the lowered text


def test_the_search_index_follows_inserts_updates_and_deletes(
    db: Database, shop: Shop, service: ContactService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "RECENT_WINDOW", 1)  # the index alone decides
    created = service.sync_batch(
        shop.id,
        [Collected(email="first@example.com", first_name="Wilhelmina"), Collected(phone="+14155550123")],
        source=Source.IMPORT,
    )
    assert _names(db, shop.id, "wilhelm") == {"first@example.com"}
    assert _names(db, shop.id, "5550123") == {"+14155550123"}
    service.sync(shop.id, Collected(email="first@example.com", first_name="Bernadette"), source=Source.FORM)
    assert _names(db, shop.id, "wilhelm") == set()
    assert _names(db, shop.id, "bernadet") == {"first@example.com"}
    with db.write_transaction() as session:
        session.execute(
            sa.update(Contact).where(Contact.id == created[1].contact_id).values(phone="+14155559876")
        )
    assert _names(db, shop.id, "5550123") == set()
    assert _names(db, shop.id, "5559876") == {"+14155559876"}
    with db.write_transaction() as session:
        session.execute(sa.delete(Contact).where(Contact.id == created[0].contact_id))
    assert _names(db, shop.id, "bernadet") == set()


def test_the_same_pages_with_and_without_the_index(
    db: Database, seeded: Shop, connection: sa.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "RECENT_WINDOW", 1)  # the second step for nearly every search
    cases = [(q, c) for q in NEEDLES for c in (None, "sms")]
    with_index = {case: _walk(db, seeded.id, *case, 2) for case in cases}
    # As before migration 0010: no prefilter, and on PostgreSQL no trigram index either (dropped inside
    # the test's transaction, which is rolled back).
    monkeypatch.setattr(queries, "search_prefilter", lambda q, dialect: None)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP INDEX ix_contacts_search_trgm")
    without = {case: _walk(db, seeded.id, *case, 2) for case in cases}
    assert with_index == without
    assert any(without.values())


def test_lower_folds_every_letter_on_a_new_connection(engine: sa.Engine) -> None:
    # SQLite's built-in lower() folds ASCII only; popsync's connections replace it (app/db.py), and the
    # search and its index (migration 0012) rely on that. PostgreSQL's folds every letter in a UTF-8 database.
    engine.dispose()  # a connection made now, not the one the migrations ran on
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT lower('ÉMILE ŁUKASZ ZOË')").scalar() == "émile łukasz zoë"
        assert connection.exec_driver_sql("SELECT lower(NULL)").scalar() is None
