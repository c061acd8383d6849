"""PostgreSQL restarts while storefront submissions flow: every submission answered 200 is in the database
exactly once (contact, ``submitted`` event and outbox row: all or nothing), every other one got a clean
``503`` with ``Retry-After`` (never a 500), none is half-written, and the app recovers by itself.

The test starts a throwaway cluster of its own with ``initdb`` and ``pg_ctl`` (never the shared server),
restarts it with ``-m fast`` and ``-m immediate`` (a crash of the server processes: only what was committed
survives) and stops it for a moment, while threads post submissions through the Flask app.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.db import create_db_engine
from app.db import get_database
from app.enums import EventKind
from app.enums import OutboxKind
from app.models import Contact
from app.models import ContactEvent
from app.models import OutboxItem
from app.shops import register_shop
from tests.conftest import app_config
from tests.conftest import migrate

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

DOMAIN = "restart.myshopify.com"
SENDERS = 4
# Answers each phase must see accepted after the server is back before the next fault (the app recovered).
ACCEPTED_PER_PHASE = 20
RECOVERY_TIMEOUT = 30.0


def postgres_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest
    /usr/lib/postgresql/*/bin. A missing binary fails the test: this fault must be proven, not skipped."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    pytest.fail(
        "initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL's server "
        "binaries (Debian: apt-get install postgresql) to run the restart test"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster in a temporary directory, run as the ``postgres`` user when the tests run as
    root (``initdb`` refuses root), with trust authentication for a superuser named ``root``."""

    def __init__(self, binaries: Path, root: Path) -> None:
        self.binaries = binaries
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            if shutil.which("runuser") is None:
                pytest.fail("running as root needs runuser to start PostgreSQL as the postgres user")
            try:
                shutil.chown(root, user="postgres")
            except LookupError:
                pytest.fail("running as root needs a postgres user to own the throwaway cluster")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.binaries / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if finished.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{tool} {' '.join(args)} failed:\n{finished.stderr}\n{log[-2000:]}")

    def _options(self) -> str:
        # fsync=off only skips flushing to disk: a crash of the server's processes (-m immediate) still
        # loses whatever was not written to the kernel, which is what a commit must never lose.
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "root", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", self._options(), "start")

    def restart(self, mode: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-m", mode, "-o", self._options(),
            "restart",
        )  # fmt: skip

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    binaries = postgres_binaries()
    root = Path(tempfile.mkdtemp(prefix="popsync-pg-"))
    cluster = Cluster(binaries, root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            subprocess.run(
                [*(["runuser", "-u", "postgres", "--"] if cluster.as_postgres else []),
                 str(binaries / "pg_ctl"), "-D", str(cluster.data), "-w", "-m", "immediate", "stop"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Answer:
    email: str
    status: int
    retry_after: str | None
    body: object
    at: float


class Senders:
    """Threads posting storefront submissions, each with a new email, until stopped."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.answers: list[Answer] = []
        self.crashes: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(n,), daemon=True) for n in range(SENDERS)]

    def _send(self, number: int) -> None:
        client = self.app.test_client()
        sent = 0
        try:
            while not self.stop.is_set():
                email = f"s{number}-{sent}@example.com"
                sent += 1
                response = client.post(
                    "/storefront/submissions",
                    json={"shop": DOMAIN, "email": email, "first_name": "Ann", "email_consent": True},
                )
                answer = Answer(
                    email,
                    response.status_code,
                    response.headers.get("Retry-After"),
                    response.get_json(silent=True),
                    time.monotonic(),
                )
                with self._lock:
                    self.answers.append(answer)
                if response.status_code != 200:
                    time.sleep(0.02)  # a storefront backs off too; do not spin on a server that is down
        except BaseException as error:
            self.crashes.append(error)

    def accepted_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.status == 200 and a.at >= moment)

    def wait_for_accepted(self, count: int, since: float, what: str) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while self.accepted_since(since) < count:
            assert not self.crashes, self.crashes
            assert time.monotonic() < deadline, f"submissions were not accepted again after {what}"
            time.sleep(0.02)

    def __enter__(self) -> Senders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def stored_rows(engine: sa.Engine) -> dict[str, tuple[int, int, int]]:
    """For each stored email: how many contacts, ``submitted`` events and push rows it has."""
    with engine.connect() as connection:
        contacts = connection.execute(sa.select(Contact.id, Contact.email)).all()
        events = Counter(
            connection.scalars(
                sa.select(ContactEvent.contact_id).where(ContactEvent.kind == EventKind.SUBMITTED)
            )
        )
        pushes = Counter(
            connection.scalars(
                sa.select(OutboxItem.contact_id).where(OutboxItem.kind == OutboxKind.PUSH_CONTACT)
            )
        )
    found: dict[str, tuple[int, int, int]] = {}
    for contact_id, email in contacts:
        before = found.get(email, (0, 0, 0))
        found[email] = (before[0] + 1, before[1] + events[contact_id], before[2] + pushes[contact_id])
    return found


def test_submissions_through_postgresql_restarts_are_stored_once_or_answered_503(
    cluster: Cluster, tmp_path: Path
) -> None:
    engine = create_db_engine(cluster.url)
    migrate(engine)
    app = create_app(app_config(cluster.url, POPSYNC_INSTANCE_PATH=str(tmp_path / "instance")))
    with get_database(app).write_transaction() as session:
        register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform="shopify",
            domain=DOMAIN,
            token="shpat_restart",
            region="US",
        )

    with Senders(app) as senders:
        senders.wait_for_accepted(ACCEPTED_PER_PHASE, 0.0, "the start")
        for fault in ("restart fast", "restart immediate", "stop immediate"):
            action, mode = fault.split()
            if action == "restart":
                cluster.restart(mode)
            else:
                cluster.stop(mode)
                time.sleep(1.0)  # a server that stays away: every submission meanwhile must be a 503
                cluster.start()
            senders.wait_for_accepted(ACCEPTED_PER_PHASE, time.monotonic(), f"pg_ctl {fault}")
    assert not senders.crashes, senders.crashes

    # The app recovered by itself: no restart of it, no pool reset, every request answered again.
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    for n in range(3):
        email = f"after-{n}@example.com"
        response = client.post("/storefront/submissions", json={"shop": DOMAIN, "email": email})
        assert response.status_code == 200, response.get_json(silent=True)
        senders.answers.append(Answer(email, 200, None, response.get_json(), time.monotonic()))

    statuses = Counter(a.status for a in senders.answers)
    print(f"answers: {dict(statuses)}")  # shown with -s: how much the faults refused
    assert set(statuses) <= {200, 503}, f"answers other than 200 and 503: {statuses}"
    refused = [a for a in senders.answers if a.status == 503]
    assert refused, "the server was down for a second and no submission was refused: the test proved nothing"
    for answer in refused:
        assert answer.retry_after is not None
        assert int(answer.retry_after) > 0
        assert isinstance(answer.body, dict)
        assert answer.body.get("ok") is False
        assert "database" in str(answer.body.get("error"))

    get_database(app).engine.dispose()
    stored = stored_rows(engine)
    engine.dispose()
    emails = Counter(a.email for a in senders.answers)
    assert max(emails.values()) == 1
    assert set(stored) <= set(emails), "a contact nobody submitted"
    for answer in senders.answers:
        found = stored.get(answer.email, (0, 0, 0))
        if answer.status == 200:
            assert found == (1, 1, 1), f"accepted {answer.email} stored as {found} (contacts, events, pushes)"
        else:
            # Refused before or during its transaction; a commit whose answer was cut off may have landed,
            # but then whole. Never a part.
            assert found in ((0, 0, 0), (1, 1, 1)), f"refused {answer.email} half-written: {found}"
