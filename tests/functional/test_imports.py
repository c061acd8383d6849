"""CSV imports over HTTP and through the worker: refused files change nothing, counts and row errors,
the per-row report, rule 9's platform choice, rule 8's consent words, rule 11's suppressions, and a
worker crash in the middle of an import."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.contacts.service import OpenBatch
from app.db import Database
from app.enums import OutboxKind
from app.enums import Source
from app.imports import ImportRunner
from app.jobs import Worker
from app.models import Contact
from app.models import Import
from app.models import OutboxItem
from app.models import Shop
from tests.fakes import MemoryPlatform

HEADER = "email,phone,first_name,last_name,birthday,gender,country,email_consent,sms_consent,tags\n"


@pytest.fixture(autouse=True)
def instance_folder(app: Flask, tmp_path: Path) -> Path:
    app.instance_path = str(tmp_path / "instance")
    return tmp_path / "instance"


@pytest.fixture
def worker(app: Flask, db: Database, service: ContactService) -> Worker:
    platform = MemoryPlatform()
    return Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        client_factory=lambda shop: platform,
    )


def upload(
    client: FlaskClient, auth: dict[str, str], content: bytes | str, write_platform: str | None = None
) -> Any:
    data: dict[str, Any] = {
        "file": (io.BytesIO(content.encode() if isinstance(content, str) else content), "contacts.csv")
    }
    if write_platform is not None:
        data["write_platform"] = write_platform
    return client.post("/api/v1/imports", data=data, headers=auth, content_type="multipart/form-data")


def contacts(db: Database, shop: Shop) -> list[Contact]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(sa.select(Contact).where(Contact.shop_id == shop.id).order_by(Contact.id))
        )


def outbox(db: Database, kind: str) -> list[OutboxItem]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(OutboxItem).where(OutboxItem.kind == kind)))


def run_imports(worker: Worker) -> None:
    """Run the worker until nothing is due (platform writes go to an in-memory platform)."""
    worker.drain(timeout=30)


def status(client: FlaskClient, auth: dict[str, str], import_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/imports/{import_id}", headers=auth)
    assert response.status_code == 200
    return response.json


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"first_name,last_name\nAnn,Lee\n", "file"),
        ("email,first_name\nann@example.com,Jos\u00e9\n".encode("latin-1"), "file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "file"),
        (b"", "file"),
        (b"email\n", "file"),
    ],
)
def test_a_refused_file_is_422_and_changes_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    db: Database,
    shop: Shop,
    instance_folder: Path,
    content: bytes,
    field: str,
) -> None:
    response = upload(client, auth, content)
    assert response.status_code == 422
    assert field in response.json["errors"]
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Import)) == 0
    assert outbox(db, OutboxKind.IMPORT_CONTACTS) == []
    assert contacts(db, shop) == []
    assert not any((instance_folder / "imports").glob("*"))  # the refused upload is not kept


def test_missing_file_and_bad_write_platform_are_422(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post("/api/v1/imports", data={}, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "file" in response.json["errors"]
    response = upload(client, auth, HEADER + "a@example.com\n", write_platform="maybe")
    assert response.status_code == 422
    assert "write_platform" in response.json["errors"]


def test_an_import_through_the_worker(
    client: FlaskClient, auth: dict[str, str], db: Database, shop: Shop, worker: Worker, instance_folder: Path
) -> None:
    content = (
        HEADER
        + 'ann@example.com,\'+14155552671,Ann,Lee,1990-04-01,female,US,yes,no,"vip, new"\n'
        + "not-an-email,,Bo,,,,,,,\n"
        + ",,Nobody,,,,,,,\n"
        + "ann@example.com,,,,,,,,,\n"
        + 'cy@example.com,,"Cy\nMulti",,1990-02-30,,,,,\n'
        + "dee@example.com,4155552672,Dee,,,,,subscribed,yes,\n"
        + "ann@example.com,,Annie,,,,,,,\n"
    )
    response = upload(client, auth, content)
    assert response.status_code == 202
    body = response.json
    assert body["status"] == "queued"
    assert body["total"] == 7
    assert "estimated_platform_seconds" not in body
    run_imports(worker)
    done = status(client, auth, body["id"])
    assert done["status"] == "done"
    assert (done["total"], done["processed"]) == (7, 7)
    assert (done["created"], done["updated"], done["skipped"]) == (2, 1, 2)
    assert [e["row"] for e in done["errors"]] == [3, 6]
    assert done["errors"][0]["message"].startswith("email:")
    assert done["errors"][1]["message"].startswith("birthday:")
    ann, dee = contacts(db, shop)
    assert (ann.first_name, ann.phone, ann.tags, ann.email_consent) == (
        "Annie",
        "+14155552671",
        ["vip", "new"],
        "subscribed",
    )
    assert (ann.source, ann.sync_status) == ("import", "local")
    assert (dee.phone, dee.sms_consent) == ("+14155552672", "subscribed")
    assert outbox(db, OutboxKind.PUSH_CONTACT) == []  # without write_platform nothing goes to the platform
    assert not any((instance_folder / "imports").glob("*"))  # the upload is removed once imported

    report = client.get(f"/api/v1/imports/{body['id']}/report.csv", headers=auth)
    assert report.status_code == 200
    assert report.headers["Content-Disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True))))
    assert rows[0] == ["row", "outcome", "message"]
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("2", "created"),
        ("3", "error"),
        ("4", "skipped"),
        ("5", "skipped"),
        ("6", "error"),
        ("7", "created"),
        ("8", "updated"),
    ]
    assert rows[3][2] == "no email or phone collected"


def test_write_platform_queues_the_platform_writes_and_estimates_their_time(
    client: FlaskClient, auth: dict[str, str], db: Database, shop: Shop, service: ContactService
) -> None:
    response = upload(client, auth, HEADER + "ann@example.com,,Ann,,,,,,,\nbo@example.com,,,,,,,,,\n", "true")
    assert response.status_code == 202
    # Shopify: 2 rows x 40 points per push / 100 points per second.
    assert response.json["estimated_platform_seconds"] == round(2 * 40 / 100)
    # The import step alone (as the worker runs it): the platform writes it queued stay for the assertion.
    assert ImportRunner(db, service).step(response.json["id"]) is True
    assert {c.sync_status for c in contacts(db, shop)} == {"pending"}
    assert len(outbox(db, OutboxKind.PUSH_CONTACT)) == 2


def test_import_unsubscribes_reach_every_holder_and_never_resubscribe(
    client: FlaskClient,
    auth: dict[str, str],
    db: Database,
    shop: Shop,
    service: ContactService,
    worker: Worker,
) -> None:
    phone = "+14155552671"
    service.sync(
        shop.id,
        Collected(email="a@example.com", phone=phone, sms_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
    )
    service.sync(
        shop.id,
        Collected(email="b@example.com", phone=phone, sms_consent=ConsentIntent.SUBSCRIBE),
        source=Source.FORM,
    )
    content = HEADER + f"new@example.com,{phone},,,,,,unsubscribed,unsubscribe,\n"
    assert upload(client, auth, content).status_code == 202
    run_imports(worker)
    people = contacts(db, shop)
    assert [c.sms_consent for c in people] == ["unsubscribed"] * 3
    new = people[2]
    assert (new.email, new.email_consent) == ("new@example.com", "unsubscribed")  # a new contact too

    again = upload(client, auth, HEADER + f"a@example.com,{phone},,,,,,yes,subscribed,\n")
    run_imports(worker)
    assert status(client, auth, again.json["id"])["status"] == "done"
    assert contacts(db, shop)[0].sms_consent == "unsubscribed"  # never re-subscribed by an import
    assert contacts(db, shop)[0].email_consent == "subscribed"  # but a channel never unsubscribed can be


def test_suppressed_identifiers_are_skipped(
    client: FlaskClient,
    auth: dict[str, str],
    db: Database,
    shop: Shop,
    service: ContactService,
    worker: Worker,
) -> None:
    with db.write_transaction() as session:
        service.suppress(session, shop.id, "email", "gone@example.com")
    response = upload(client, auth, HEADER + "gone@example.com,,Gone,,,,,,,\nok@example.com,,,,,,,,,\n")
    run_imports(worker)
    done = status(client, auth, response.json["id"])
    assert (done["created"], done["skipped"]) == (1, 1)
    assert [c.email for c in contacts(db, shop)] == ["ok@example.com"]
    rows = list(
        csv.reader(
            io.StringIO(
                client.get(f"/api/v1/imports/{done['id']}/report.csv", headers=auth).get_data(as_text=True)
            )
        )
    )
    assert rows[1][1:] == ["skipped", "an erased person's identifier (rule 11)"]


def test_another_shops_import_is_404(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    from tests.conftest import add_api_key
    from tests.conftest import add_shop

    other = add_shop(app, "other.myshopify.com")
    response = upload(
        client, {"Authorization": f"Bearer {add_api_key(app, other)}"}, HEADER + "a@example.com\n"
    )
    assert response.status_code == 202
    assert client.get(f"/api/v1/imports/{response.json['id']}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/imports/{response.json['id']}/report.csv", headers=auth).status_code == 404
    assert client.get("/api/v1/imports/1").status_code == 401


def test_a_crash_mid_import_resumes_without_counting_twice(
    client: FlaskClient,
    auth: dict[str, str],
    db: Database,
    shop: Shop,
    service: ContactService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = "".join(f"user{i}@example.com,,User{i},,,,,,,tag{i % 3}\n" for i in range(10))
    response = upload(client, auth, HEADER + lines + "bad,,,,,,,,,\n" + "user0@example.com,,,,,,,,,\n")
    import_id = response.json["id"]
    runner = ImportRunner(db, service, batch_size=3)

    # The worker dies after the second batch committed...
    done_batches = []

    def die_after_two(rows: int) -> None:
        done_batches.append(rows)
        if len(done_batches) == 2:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        runner.step(import_id, on_batch=die_after_two)
    assert status(client, auth, import_id)["processed"] == 6

    # ...and the next one dies inside the third batch, before it commits.
    real = OpenBatch.commit

    def die_inside(self: OpenBatch, before_commit: Any) -> Any:
        def broken(session: Any, results: Any) -> None:
            before_commit(session, results)
            raise SystemExit("killed before commit")

        return real(self, broken)

    monkeypatch.setattr(OpenBatch, "commit", die_inside)
    with pytest.raises(SystemExit):
        ImportRunner(db, service, batch_size=3).step(import_id)
    monkeypatch.setattr(OpenBatch, "commit", real)
    assert status(client, auth, import_id)["processed"] == 6
    assert len(contacts(db, shop)) == 6

    assert ImportRunner(db, service, batch_size=3).step(import_id) is True
    done = status(client, auth, import_id)
    assert done["status"] == "done"
    assert (done["total"], done["processed"], done["created"], done["skipped"]) == (12, 12, 10, 1)
    assert [e["row"] for e in done["errors"]] == [12]
    assert len(contacts(db, shop)) == 10
    report = client.get(f"/api/v1/imports/{import_id}/report.csv", headers=auth).get_data(as_text=True)
    assert [r[0] for r in csv.reader(io.StringIO(report))][1:] == [str(n) for n in range(2, 14)]
