"""The import's fast path against its plain one, on a database whose commits are real.

On PostgreSQL an import commits batch N on a thread of its own while batch N+1 is decided in a second
transaction, and a large file is parsed by a process of its own (app/imports.py, app/contacts/import_rows.py).
Each test imports one file twice, the fast way into one shop and one batch at a time (parsed in-process)
into another, and compares the contacts, the counts and the per-row report: the same people reappear
across batches, link an email to a phone, unsubscribe and carry bad rows, so a batch decided against a
state its predecessor had not yet committed would show. On SQLite both ways are the plain one (one writer
at a time), and the tests still hold.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError

from app.contacts.csvio import RowError
from app.contacts.import_rows import parsed_ahead
from app.contacts.import_rows import parsed_batches
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.contacts.service import OpenBatch
from app.crypto import Keyring
from app.db import Database
from app.imports import ImportRunner
from app.imports import report_rows
from app.imports import start_import
from app.models import Contact
from app.models import Import
from app.shops import register_shop
from tests.conftest import POSTGRES_URL
from tests.conftest import TEST_SECRET_KEY

HEADER = "email,phone,first_name,last_name,email_consent,sms_consent,tags\n"


class OneAtATime(Database):
    """The same database, taking the plain path: each batch committed before the next is decided."""

    parallel_transactions = False  # type: ignore[assignment]


def make_file(path: Path, rows: int, seed: int) -> Path:
    """People drawn from a small pool, so identifiers recur within and across batches."""
    rng = random.Random(seed)
    lines = [HEADER]
    for i in range(rows):
        person = rng.randrange(rows // 3 + 1)
        email = f"person{person}@example.com" if rng.random() < 0.85 else ""
        phone = f"+1415555{person % 60:04d}" if rng.random() < 0.5 else ""
        if rng.random() < 0.03:
            email, phone = "not-an-email", ""  # a row error
        consent = rng.choice(["yes", "no", "", "unsubscribed"])
        sms = rng.choice(["yes", "no", ""]) if phone else ""
        lines.append(f"{email},{phone},First{i % 7},Last{i % 5},{consent},{sms},tag{i % 4}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def database(fresh_database: sa.Engine) -> Database:
    return Database(str(fresh_database.url), engine=fresh_database)


@pytest.fixture
def service(database: Database) -> ContactService:
    return ContactService(database, Keyring(TEST_SECRET_KEY))


@pytest.fixture
def shops(database: Database) -> tuple[int, int]:
    keyring = Keyring(TEST_SECRET_KEY)
    with database.write_transaction() as session:
        fast = register_shop(session, keyring, platform="shopify", domain="f.myshopify.com", token="t")
        plain = register_shop(session, keyring, platform="shopify", domain="p.myshopify.com", token="t")
        return fast.id, plain.id


def import_file(runner: ImportRunner, shop_id: int, path: Path) -> int:
    copy = path.with_name(f"{shop_id}-{path.name}")
    copy.write_bytes(path.read_bytes())
    record = start_import(runner.db, shop_id, copy, filename=path.name, write_platform=False)
    runner.run(record.id)
    return record.id


def outcome(database: Database, shop_id: int, import_id: int) -> dict[str, Any]:
    with database.sessionmaker() as session:
        record = session.get(Import, import_id)
        assert record is not None
        contacts = session.scalars(sa.select(Contact).where(Contact.shop_id == shop_id)).all()
        return {
            "status": record.status,
            "counts": (record.processed, record.created, record.updated, record.skipped, record.error_count),
            "report": list(report_rows(session, import_id)),
            "contacts": sorted(
                (
                    c.email or "",
                    c.phone or "",
                    c.first_name,
                    c.last_name,
                    c.email_consent,
                    c.sms_consent,
                    tuple(sorted(c.tags)),
                )
                for c in contacts
            ),
        }


@pytest.fixture
def no_children_left() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []  # the parsing process always ends with its step


@pytest.mark.slow
@pytest.mark.usefixtures("no_children_left")
@pytest.mark.parametrize("seed", [3, 4])
def test_the_fast_path_imports_what_the_plain_path_imports(
    database: Database, service: ContactService, shops: tuple[int, int], tmp_path: Path, seed: int
) -> None:
    assert database.parallel_transactions is bool(POSTGRES_URL)  # the fast path is really taken there
    path = make_file(tmp_path / "contacts.csv", 600, seed)
    fast = ImportRunner(database, service, batch_size=13, parse_ahead_from=1)
    plain = ImportRunner(
        OneAtATime(database.url, database.engine), service, batch_size=13, parse_ahead_from=10**9
    )

    fast_id = import_file(fast, shops[0], path)
    plain_id = import_file(plain, shops[1], path)

    expected = outcome(database, shops[1], plain_id)
    assert expected["status"] == "done"
    assert expected["counts"][4] > 0  # row errors happened
    assert expected["counts"][2] > 0  # and updates
    assert outcome(database, shops[0], fast_id) == expected


@pytest.mark.slow
@pytest.mark.usefixtures("no_children_left")
@pytest.mark.parametrize("commits_in_flight", [1, 2, 3])
def test_a_batch_the_database_refuses_is_retried_row_by_row_and_the_next_decided_again(
    database: Database,
    service: ContactService,
    shops: tuple[int, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    commits_in_flight: int,
) -> None:
    path = make_file(tmp_path / "contacts.csv", 200, seed=5)
    real_commit = OpenBatch.commit
    refused: list[int] = []

    def refuse_the_third_batch(self: OpenBatch, before_commit: Any = None) -> Any:
        # The third batch of several rows fails as a value the database refused would; its rows one by
        # one then go through. The batch after it had been decided meanwhile, against a state where the
        # third batch was about to commit: it must be rolled back and decided again.
        if len(self.results) > 1:
            refused.append(len(self.results))
            if len(refused) == 3:
                self.rollback()
                raise StatementError("value refused", None, None, ValueError("refused"))
        return real_commit(self, before_commit)

    monkeypatch.setattr(OpenBatch, "commit", refuse_the_third_batch)
    # With more than one batch committing, the ones after the refused batch were already sending their
    # rows: they roll themselves back and are done again after it.
    fast = ImportRunner(
        database, service, batch_size=11, parse_ahead_from=1, commits_in_flight=commits_in_flight
    )
    fast_id = import_file(fast, shops[0], path)
    monkeypatch.setattr(OpenBatch, "commit", real_commit)
    plain_id = import_file(
        ImportRunner(OneAtATime(database.url, database.engine), service, batch_size=11), shops[1], path
    )

    assert len(refused) > 3
    assert outcome(database, shops[0], fast_id) == outcome(database, shops[1], plain_id)


@pytest.mark.usefixtures("no_children_left")
def test_a_step_that_stops_early_ends_its_parsing_process_and_the_next_resumes(
    database: Database, service: ContactService, shops: tuple[int, int], tmp_path: Path
) -> None:
    path = make_file(tmp_path / "contacts.csv", 300, seed=6)
    runner = ImportRunner(database, service, batch_size=10, parse_ahead_from=1)
    copy = tmp_path / "upload.csv"
    copy.write_bytes(path.read_bytes())
    record = start_import(database, shops[0], copy, filename="contacts.csv", write_platform=False)

    assert runner.step(record.id, max_seconds=0) is False  # one batch, then the step hands the job back
    assert multiprocessing.active_children() == []
    with database.sessionmaker() as session:
        assert session.get(Import, record.id).processed == 10  # type: ignore[union-attr]

    while not runner.step(record.id, max_seconds=0):
        pass
    plain_id = import_file(ImportRunner(OneAtATime(database.url, database.engine), service), shops[1], path)
    assert outcome(database, shops[0], record.id) == outcome(database, shops[1], plain_id)


@pytest.mark.usefixtures("no_children_left")
def test_a_file_that_breaks_under_the_parsing_process_fails_the_import_with_the_reason(
    database: Database, service: ContactService, shops: tuple[int, int], tmp_path: Path
) -> None:
    path = make_file(tmp_path / "contacts.csv", 2000, seed=7)
    record = start_import(database, shops[0], path, filename="contacts.csv", write_platform=False)
    with open(path, "ab") as changed:  # the saved upload changed after pass 1: not UTF-8 any more
        changed.write(b"\xff\xfe broken,,,,,,\n")

    ImportRunner(database, service, batch_size=100, parse_ahead_from=1).run(record.id)
    with database.sessionmaker() as session:
        failed = session.get(Import, record.id)
        assert failed is not None
        assert failed.status == "failed"
        assert "must be UTF-8 text" in (failed.detail or "")
        # The rows before the break were imported (the text is decoded a few kilobytes at a time, so the
        # break shows a little before the reader reaches its row).
        assert 1500 <= failed.processed < 2000


@pytest.mark.nodb
@pytest.mark.usefixtures("no_children_left")
def test_rows_parsed_by_the_parsing_process_arrive_as_parsed_here(tmp_path: Path) -> None:
    # Rows cross the pipe packed as tuples (a Collected's fields in order): every field and every row
    # error must come back exactly as parsing them in this process gives them.
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,phone,first_name,last_name,birthday,gender,country,email_consent,sms_consent,tags\n"
        'ann@example.com,+14155550100,Ann,Lee,1990-04-02,female,US,yes,no,"vip, newsletter"\n'
        "not-an-email,,Bob,,,,,,,\n"
        ",+14155550101,,,,,CA,,subscribed,\n",
        encoding="utf-8",
    )
    today = date(2026, 11, 30)
    here = [row for batch in parsed_batches(str(path), 0, 2, "US", today) for row in batch]
    with parsed_ahead(str(path), 0, 2, "US", today) as batches:
        there = [row for batch in batches for row in batch]
    assert there == here
    assert [type(parsed) for _, parsed in there] == [Collected, RowError, Collected]
    ann = there[0][1]
    assert isinstance(ann, Collected)
    assert (ann.email, ann.phone, ann.birthday, ann.country) == (
        "ann@example.com", "+14155550100", date(1990, 4, 2), "US"
    )  # fmt: skip
    assert (ann.email_consent, ann.tags, ann.may_resubscribe) == (
        ConsentIntent.SUBSCRIBE,
        ("vip", "newsletter"),
        False,
    )
    assert there[1][0] == 3
    assert isinstance(there[1][1], RowError)
    assert there[1][1].message.startswith("email: is not a valid email address")
