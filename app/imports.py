"""CSV imports (CONTRACT.md: ``POST /api/v1/imports``; rules 8, 9 and 11): two passes over a file that
is never held in memory or in the database.

- Pass 1, ``start_import`` (in the request or the CLI, before anything changes): the upload is saved in
  the instance folder, read through once to check it is UTF-8 CSV with an email or phone column, and its
  rows counted; then the import and its job are committed together. A refused file changes nothing.
- Pass 2, ``ImportRunner.step`` (the worker, job kind ``import_contacts``): the rows are streamed in
  batches through ``ContactService.sync_batch`` (source ``import``). Each batch commits with the import's
  progress and the batch's row outcomes in the same transaction, so a worker that dies mid-import is
  resumed after the last committed batch and nothing is counted twice. A step runs for a few seconds and
  then hands the job back to the queue, so a long import neither outlives its lease nor starves other
  shops' jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from app.contacts import csvio
from app.contacts.rules import Action
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.contacts.service import SyncResult
from app.db import Database
from app.db import utcnow
from app.enums import OutboxKind
from app.enums import Platform
from app.enums import Source
from app.models import Import
from app.models import ImportBatch
from app.models import OutboxItem
from app.models import PlatformBudget
from app.models import Shop

log = logging.getLogger("popsync.imports")

BATCH_SIZE = 1000
STEP_SECONDS = 20.0  # a worker step's length; well inside the worker's lease (300 s by default)
MAX_ERRORS_LISTED = 100  # in the import's JSON; the report lists every row
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
IMPORT_PRIORITY = 120  # after the platform writes a shopper is waiting on
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
CREATED, UPDATED, SKIPPED, ERROR = "created", "updated", "skipped", "error"


class _Superseded(Exception):
    """Another runner committed this batch first (a lease ran out): this runner's copy is rolled back."""


def upload_folder(instance_path: str) -> Path:
    folder = Path(instance_path) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_upload(stream: IO[bytes], folder: Path) -> Path:
    """Copy the upload to the folder in chunks; ``FileRefused`` past the size limit (the copy is removed)."""
    path = folder / f"{uuid.uuid4().hex}.csv"
    written = 0
    try:
        with open(path, "wb") as out:
            while chunk := stream.read(1024 * 1024):
                written += len(chunk)
                if written > MAX_UPLOAD_BYTES:
                    raise csvio.FileRefused(f"is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def start_import(
    db: Database, shop_id: int, path: Path, *, filename: str | None, write_platform: bool
) -> Import:
    """Pass 1 over a saved upload, then the import and its worker job in one transaction.

    ``FileRefused`` when the file cannot be imported; the saved copy is removed and nothing changes."""
    try:
        _, total = csvio.count_rows(str(path))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    now = utcnow()
    with db.write_transaction() as session:
        record = Import(
            shop_id=shop_id,
            status=QUEUED,
            filename=(filename or "")[:255] or None,
            path=str(path),
            write_platform=write_platform,
            total=total,
            processed=0,
            created=0,
            updated=0,
            skipped=0,
            error_count=0,
            errors=[],
            created_at=now,
        )
        session.add(record)
        session.flush()
        session.add(
            OutboxItem(
                shop_id=shop_id,
                kind=OutboxKind.IMPORT_CONTACTS,
                payload={"import_id": record.id},
                priority=IMPORT_PRIORITY,
                due_at=now,
            )
        )
    return record


@dataclass
class _Progress:
    """The counts of one batch, added to the import's in the batch's transaction."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0


class ImportRunner:
    """Pass 2: streams an import's rows through the sync rules, a batch per transaction."""

    def __init__(
        self,
        db: Database,
        contacts: ContactService,
        *,
        batch_size: int = BATCH_SIZE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.contacts = contacts
        self.batch_size = batch_size
        self.clock = clock

    def run(self, import_id: int, on_batch: Callable[[int], None] | None = None) -> None:
        """Every step until the import is done (the CLI runs both passes in-process)."""
        while not self.step(import_id, max_seconds=None, on_batch=on_batch):
            pass

    def step(
        self,
        import_id: int,
        *,
        max_seconds: float | None = STEP_SECONDS,
        on_batch: Callable[[int], None] | None = None,
    ) -> bool:
        """Import batches for about ``max_seconds`` (None: to the end). True when the import is over."""
        started = time.monotonic()
        with self.db.write_transaction() as session:
            record = session.get(Import, import_id)
            if record is None or record.status in (DONE, FAILED):
                return True
            shop = session.get(Shop, record.shop_id)
            if record.status == QUEUED:
                record.status = RUNNING
                record.started_at = self.clock()
            region = shop.region if shop else None
            shop_id, path, write_platform = record.shop_id, record.path, record.write_platform
            done_rows = record.processed
        if not path or not os.path.exists(path):
            self._fail(import_id, "the uploaded file is no longer there; upload it again")
            return True
        try:
            with csvio.open_text(path) as stream:
                layout = csvio.read_layout(stream)
                for batch in _batches(csvio.records(stream, layout), done_rows, self.batch_size):
                    if not self._commit_batch(import_id, shop_id, region, layout, batch, write_platform):
                        return False  # another runner got ahead: the job runs again and resumes
                    if on_batch is not None:
                        on_batch(len(batch))
                    if max_seconds is not None and time.monotonic() - started >= max_seconds:
                        return False
        except csvio.FileRefused as error:
            self._fail(import_id, f"the file changed and can no longer be read: {error.message}")
            return True
        self._finish(import_id, path)
        return True

    def _commit_batch(
        self,
        import_id: int,
        shop_id: int,
        region: str | None,
        layout: csvio.Layout,
        batch: list[tuple[int, list[str]]],
        write_platform: bool,
    ) -> bool:
        today = self.clock().date()
        parsed = [(row, csvio.parse_row(cells, layout, region, today)) for row, cells in batch]
        valid = [(row, item) for row, item in parsed if isinstance(item, Collected)]

        def record_progress(session: Session, results: list[SyncResult]) -> None:
            outcomes = dict(zip([row for row, _ in valid], results, strict=True))
            entries: list[list[Any]] = []
            progress = _Progress()
            for row, item in parsed:
                if isinstance(item, csvio.RowError):
                    progress.errors += 1
                    entries.append([row, ERROR, item.message])
                    continue
                outcome, message = _outcome(outcomes[row])
                setattr(progress, outcome, getattr(progress, outcome) + 1)
                entries.append([row, outcome, message])
            self._record(session, import_id, batch[0][0], len(batch), progress, entries)

        try:
            if valid:
                self.contacts.sync_batch(
                    shop_id,
                    [item for _, item in valid],
                    source=Source.IMPORT,
                    evidence=[{"import_id": import_id, "row": row} for row, _ in valid],
                    write_platform=write_platform,
                    lift_suppression=False,
                    before_commit=record_progress,
                )
            else:
                with self.db.write_transaction() as session:
                    record_progress(session, [])
        except _Superseded:
            return False
        except StatementError as error:
            # A value the database refused despite the checks: find the row by syncing one at a time, so
            # one row never stops the import.
            log.warning(
                "import %s: batch at row %s refused (%s); retrying row by row", import_id, batch[0][0], error
            )
            return self._commit_rows(import_id, shop_id, region, layout, batch, write_platform)
        return True

    def _commit_rows(
        self,
        import_id: int,
        shop_id: int,
        region: str | None,
        layout: csvio.Layout,
        batch: list[tuple[int, list[str]]],
        write_platform: bool,
    ) -> bool:
        for row, cells in batch:
            try:
                if not self._commit_batch_strict(
                    import_id, shop_id, region, layout, (row, cells), write_platform
                ):
                    return False
            except StatementError as error:
                reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
                with self.db.write_transaction() as session:
                    try:
                        self._record(
                            session,
                            import_id,
                            row,
                            1,
                            _Progress(errors=1),
                            [[row, ERROR, f"could not be stored: {reason}"]],
                        )
                    except _Superseded:
                        return False
        return True

    def _commit_batch_strict(
        self,
        import_id: int,
        shop_id: int,
        region: str | None,
        layout: csvio.Layout,
        item: tuple[int, list[str]],
        write_platform: bool,
    ) -> bool:
        """One row as a batch of its own, letting a database error reach the caller."""
        row, cells = item
        parsed = csvio.parse_row(cells, layout, region, self.clock().date())
        if isinstance(parsed, csvio.RowError):
            with self.db.write_transaction() as session:
                self._record(session, import_id, row, 1, _Progress(errors=1), [[row, ERROR, parsed.message]])
            return True

        def record_progress(session: Session, results: list[SyncResult]) -> None:
            outcome, message = _outcome(results[0])
            progress = _Progress()
            setattr(progress, outcome, 1)
            self._record(session, import_id, row, 1, progress, [[row, outcome, message]])

        try:
            self.contacts.sync_batch(
                shop_id,
                [parsed],
                source=Source.IMPORT,
                evidence=[{"import_id": import_id, "row": row}],
                write_platform=write_platform,
                lift_suppression=False,
                before_commit=record_progress,
            )
        except _Superseded:
            return False
        return True

    def _record(
        self,
        session: Session,
        import_id: int,
        first_row: int,
        rows: int,
        progress: _Progress,
        entries: list[list[Any]],
    ) -> None:
        """Add a batch's counts and outcomes to the import, in the batch's own transaction."""
        record = session.scalars(sa.select(Import).where(Import.id == import_id).with_for_update()).one()
        already = session.scalar(
            sa.select(ImportBatch.id).where(
                ImportBatch.import_id == import_id, ImportBatch.first_row == first_row
            )
        )
        if already is not None or record.status != RUNNING:
            raise _Superseded
        record.processed += rows
        record.created += progress.created
        record.updated += progress.updated
        record.skipped += progress.skipped
        record.error_count += progress.errors
        room = MAX_ERRORS_LISTED - len(record.errors or [])
        if room > 0:
            listed = [{"row": e[0], "message": e[2]} for e in entries if e[1] == ERROR][:room]
            if listed:
                record.errors = [*(record.errors or []), *listed]
        session.add(ImportBatch(import_id=import_id, first_row=first_row, entries=entries))

    def _finish(self, import_id: int, path: str) -> None:
        with self.db.write_transaction() as session:
            record = session.get(Import, import_id)
            if record is not None and record.status == RUNNING:
                record.status = DONE
                record.finished_at = self.clock()
                record.path = None
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _fail(self, import_id: int, reason: str) -> None:
        fail_import(self.db, import_id, reason, self.clock())


def fail_import(db: Database, import_id: int, reason: str, now: datetime) -> None:
    """The import cannot go on: it shows ``failed`` with the reason; what was committed stays."""
    with db.write_transaction() as session:
        record = session.get(Import, import_id)
        if record is None or record.status in (DONE, FAILED):
            return
        record.status = FAILED
        record.detail = reason
        record.finished_at = now
        path, record.path = record.path, None
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _batches(
    rows: Iterator[tuple[int, list[str]]], skip: int, size: int
) -> Iterator[list[tuple[int, list[str]]]]:
    """Batches of rows after the first ``skip`` (those a committed batch already holds)."""
    batch: list[tuple[int, list[str]]] = []
    for index, item in enumerate(rows):
        if index < skip:
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _outcome(result: SyncResult) -> tuple[str, str]:
    if result.action is Action.CREATE:
        return CREATED, ""
    if result.action is Action.UPDATE:
        if result.changed:
            return UPDATED, "changed: " + ", ".join(result.changed)
        return SKIPPED, "nothing changed"
    return SKIPPED, result.reason


# --- what the merchant sees ---------------------------------------------------------------------------


def platform_rate(session: Session, shop: Shop, shopline_rate: float) -> float:
    """The shop's platform budget restored per second: what the platform last reported, else its
    default (Shopify standard plan: 100 points/s; SHOPLINE: the configured requests/s)."""
    from app.platforms.shopify import DEFAULT_RESTORE_RATE

    known = session.scalar(sa.select(PlatformBudget.restore_rate).where(PlatformBudget.shop_id == shop.id))
    if known:
        return float(known)
    return DEFAULT_RESTORE_RATE if shop.platform == Platform.SHOPIFY else shopline_rate


def estimated_platform_seconds(rows: int, platform: str, rate: float) -> int:
    """How long writing ``rows`` contacts to the platform takes at the shop's rate:
    ``rows x PUSH_COST[platform] / rate`` seconds (PUSH_COST in app/jobs.py: the budget one push takes)."""
    from app.jobs import PUSH_COST

    cost = PUSH_COST.get(Platform(platform), 1.0)
    return round(rows * cost / rate) if rate > 0 else 0


def import_json(record: Import, estimate: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.id,
        "status": record.status,
        "filename": record.filename,
        "write_platform": record.write_platform,
        "total": record.total,
        "processed": record.processed,
        "created": record.created,
        "updated": record.updated,
        "skipped": record.skipped,
        "error_count": record.error_count,
        "errors": list(record.errors or []),
        "detail": record.detail,
        "created_at": record.created_at.isoformat(),
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }
    if record.write_platform and estimate is not None:
        body["estimated_platform_seconds"] = estimate
    return body


def report_rows(session: Session, import_id: int) -> Iterator[list[str]]:
    """Every row's outcome in file order, batch by batch (the report CSV streams this)."""
    last = 0
    while True:
        batch = session.scalars(
            sa.select(ImportBatch)
            .where(ImportBatch.import_id == import_id, ImportBatch.first_row > last)
            .order_by(ImportBatch.first_row)
            .limit(1)
        ).first()
        if batch is None:
            return
        last = batch.first_row
        for row, outcome, message in batch.entries:
            yield [str(row), outcome, csvio.neutralise(message or "")]
        session.expunge(batch)
