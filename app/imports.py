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
import enum
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from pathlib import Path
from typing import IO
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from app.contacts import csvio
from app.contacts.import_rows import ParsedRow
from app.contacts.import_rows import parsed_ahead
from app.contacts.import_rows import parsed_batches
from app.contacts.rules import Action
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.contacts.service import OpenBatch
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
# Files with at least this many rows left are parsed by a process of their own (app/contacts/import_rows.py);
# below it, starting that process (~0.1 s, more the first time) would cost more than it saves.
PARSE_AHEAD_FROM_ROWS = 20_000
# Batches committing at once on PostgreSQL while the next is decided (``_Pipelined``). Each open batch holds
# an advisory lock per identifier (~1,500 for 1,000 rows) in PostgreSQL's shared lock table, which holds
# max_locks_per_transaction x max_connections (6,400 by default): an import takes ~4,500 at most
# (docs/deploy.md says when to raise it).
COMMITS_IN_FLIGHT = 2
STEP_SECONDS = 20.0  # a worker step's length; well inside the worker's lease (300 s by default)
MAX_ERRORS_LISTED = 100  # in the import's JSON; the report lists every row
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
IMPORT_PRIORITY = 120  # after the platform writes a shopper is waiting on
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
CREATED, UPDATED, SKIPPED, ERROR = "created", "updated", "skipped", "error"


class _AfterFailed(Exception):
    """A batch's predecessor did not commit: the batch rolls back, to be done again after it."""


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


# Writes a batch's counts and outcomes inside the batch's transaction (``OpenBatch.commit``'s before_commit).
_ProgressWriter = Callable[[Session, list[SyncResult]], None]


def _progress_of(
    opened: OpenBatch, progress_writer: Callable[[list[SyncResult]], _ProgressWriter]
) -> _ProgressWriter:
    """The opened batch's progress writer; the batch rolled back if it cannot be made."""
    try:
        return progress_writer(opened.results)
    except BaseException:
        opened.rollback()
        raise


@dataclass
class _Progress:
    """The counts of one batch, added to the import's in the batch's transaction."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0


@dataclass
class _Job:
    """What every batch of one step of an import needs to know."""

    import_id: int
    shop_id: int
    region: str | None
    write_platform: bool
    on_batch: Callable[[int], None] | None


class _Sequential:
    """Each batch decided, written and committed before the next is read."""

    def __init__(self, runner: ImportRunner) -> None:
        self.runner = runner

    def submit(self, job: _Job, batch: list[ParsedRow]) -> bool:
        if not self.runner._commit_batch(job, batch):
            return False
        if job.on_batch is not None:
            job.on_batch(len(batch))
        return True

    def finish(self) -> bool:
        return True


class _Pipelined:
    """Batches commit on the executor's threads, up to ``depth`` at once, while the caller's thread decides
    the next one in a transaction of its own: batch N sends its COPYs while batch N-1 commits and batch N+1
    is decided (Python's share and the database's overlap on two cores).

    The sync service's locks keep them apart: a batch waits for the identifier and row locks of the batches
    before it wherever they share an identifier or a contact. Each batch's progress is written only once
    the batch before it has committed, and a batch whose predecessor failed rolls itself back, so batches
    commit in file order, each on top of the ones before. A batch never waits for a later one (it took every
    lock it needs before they began). When a batch fails, the later ones, decided against a state that
    never committed, are rolled back first and done again after it, one by one."""

    def __init__(self, runner: ImportRunner, executor: ThreadPoolExecutor, depth: int) -> None:
        self.runner = runner
        self.executor = executor
        self.depth = depth
        self.pending: deque[tuple[_Job, list[ParsedRow], Future[list[SyncResult]]]] = deque()

    def submit(self, job: _Job, batch: list[ParsedRow]) -> bool:
        valid, progress_writer = self.runner._prepare(job, batch)
        opened = None
        if valid:
            with contextlib.suppress(StatementError):  # rolled back; done again below, one row at a time
                opened = self.runner._open(job, valid)
        # Room for this batch; a batch done on this thread (no valid rows, or refused when opened) waits
        # for every batch before it.
        while self.pending and (opened is None or len(self.pending) >= self.depth):
            outcome = self._wait_oldest(rolling_back=opened)
            if outcome is _Outcome.STOPPED:
                return False
            if outcome is _Outcome.RETRIED:
                opened = None  # rolled back with the batches after the one that failed
        if opened is None:
            return _Sequential(self.runner).submit(job, batch)
        write_progress = _progress_of(opened, progress_writer)
        previous = self.pending[-1][2] if self.pending else None

        def after_previous(session: Session, results: list[SyncResult]) -> None:
            if previous is not None:
                try:
                    previous.result()
                except BaseException as error:
                    raise _AfterFailed from error  # this batch rolls back; the caller does it again
            write_progress(session, results)

        self.pending.append((job, batch, self.executor.submit(opened.commit, after_previous)))
        return True

    def finish(self) -> bool:
        while self.pending:
            if self._wait_oldest() is _Outcome.STOPPED:
                return False
        return True

    def _wait_oldest(self, rolling_back: OpenBatch | None = None) -> _Outcome:
        """Wait for the oldest batch being committed. If it failed, ``rolling_back`` (the next batch's open
        transaction, whose locks the retry may need) is rolled back and the batches committing after it
        end (they roll themselves back) before anything else; then it is retried row by row and they are
        done again, one after another."""
        job, batch, future = self.pending.popleft()
        try:
            future.result()
        except BaseException as error:
            if rolling_back is not None:
                rolling_back.rollback()
            later = list(self.pending)
            self.pending.clear()
            for _, _, after in later:
                with contextlib.suppress(BaseException):
                    after.result()
            if isinstance(error, _Superseded):
                return _Outcome.STOPPED
            if not isinstance(error, StatementError):
                raise
            if not self.runner._refused(job, batch, error):
                return _Outcome.STOPPED
            if job.on_batch is not None:
                job.on_batch(len(batch))
            for later_job, later_batch, _ in later:
                if not _Sequential(self.runner).submit(later_job, later_batch):
                    return _Outcome.STOPPED
            return _Outcome.RETRIED
        if job.on_batch is not None:
            job.on_batch(len(batch))
        return _Outcome.COMMITTED

    def abandon(self) -> None:
        """On the way out after an error: let the batches being committed end, whatever their outcome."""
        while self.pending:
            with contextlib.suppress(Exception):
                self.pending.popleft()[2].result()


class _Outcome(enum.Enum):
    COMMITTED = "committed"
    RETRIED = "retried row by row"
    STOPPED = "stopped: another runner got ahead"


class ImportRunner:
    """Pass 2: streams an import's rows through the sync rules, a batch per transaction."""

    def __init__(
        self,
        db: Database,
        contacts: ContactService,
        *,
        batch_size: int = BATCH_SIZE,
        parse_ahead_from: int = PARSE_AHEAD_FROM_ROWS,
        commits_in_flight: int = COMMITS_IN_FLIGHT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.contacts = contacts
        self.batch_size = batch_size
        self.parse_ahead_from = parse_ahead_from
        self.commits_in_flight = max(1, commits_in_flight)
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
            done_rows, total = record.processed, record.total
        if not path or not os.path.exists(path):
            self._fail(import_id, "the uploaded file is no longer there; upload it again")
            return True
        job = _Job(import_id, shop_id, region, write_platform, on_batch)
        today = self.clock().date()
        try:
            with (
                self._parsed(path, total - done_rows, done_rows, region, today) as batches,
                self._committer() as committer,
            ):
                for batch in batches:
                    if not committer.submit(job, batch):
                        return False  # another runner got ahead: the job runs again and resumes
                    if max_seconds is not None and time.monotonic() - started >= max_seconds:
                        committer.finish()
                        return False
                if not committer.finish():
                    return False
        except csvio.FileRefused as error:
            self._fail(import_id, f"the file changed and can no longer be read: {error.message}")
            return True
        self._finish(import_id, path)
        return True

    def _parsed(
        self, path: str, remaining: int, done_rows: int, region: str | None, today: date
    ) -> contextlib.AbstractContextManager[Iterator[list[ParsedRow]]]:
        """The rows left, parsed: by a process of their own when there are many (it then runs on the
        other core, a batch ahead), else here."""
        if remaining >= self.parse_ahead_from:
            return parsed_ahead(path, done_rows, self.batch_size, region, today)
        return contextlib.nullcontext(parsed_batches(path, done_rows, self.batch_size, region, today))

    @contextlib.contextmanager
    def _committer(self) -> Iterator[_Sequential | _Pipelined]:
        """PostgreSQL with a connection per transaction: batches commit on threads of their own while the
        next is read, locked and decided (Python's share and the database's then overlap on two cores).
        Otherwise (SQLite has one writer at a time; tests bind every session to one connection) one batch
        after the other."""
        if not self.db.parallel_transactions:
            yield _Sequential(self)
            return
        depth = self.commits_in_flight
        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="import-commit") as executor:
            committer = _Pipelined(self, executor, depth)
            try:
                yield committer
            finally:
                committer.abandon()

    def _prepare(
        self, job: _Job, parsed: list[ParsedRow]
    ) -> tuple[list[tuple[int, Collected]], Callable[[list[SyncResult]], _ProgressWriter]]:
        """A batch's valid rows, and what makes its progress writer from their results."""
        valid = [(row, item) for row, item in parsed if isinstance(item, Collected)]
        postgres = self.db.dialect == "postgresql"

        def progress_writer(results: list[SyncResult]) -> _ProgressWriter:
            # Tallied here, on the thread that decided the batch: the thread committing the one before is
            # the import's bottleneck and does only the writes.
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

            def record_progress(session: Session, _results: list[SyncResult]) -> None:
                if postgres:
                    # A batch is worth a WAL flush only once: progress commits with the batch, so a database
                    # crash loses at most the last few batches' commits (well under a second) and the
                    # import resumes before them, losing nothing.
                    session.execute(sa.text("SET LOCAL synchronous_commit = off"))
                self._record(session, job.import_id, parsed[0][0], len(parsed), progress, entries)

            return record_progress

        return valid, progress_writer

    def _open(self, job: _Job, valid: list[tuple[int, Collected]]) -> OpenBatch:
        return self.contacts.open_batch(
            job.shop_id,
            [item for _, item in valid],
            source=Source.IMPORT,
            evidence=[{"import_id": job.import_id, "row": row} for row, _ in valid],
            write_platform=job.write_platform,
            lift_suppression=False,
        )

    def _commit_batch(self, job: _Job, batch: list[ParsedRow]) -> bool:
        """One batch in one transaction; False when another runner committed it first."""
        valid, progress_writer = self._prepare(job, batch)
        try:
            if valid:
                opened = self._open(job, valid)
                opened.commit(_progress_of(opened, progress_writer))
            else:
                with self.db.write_transaction() as session:
                    progress_writer([])(session, [])
        except _Superseded:
            return False
        except StatementError as error:
            return self._refused(job, batch, error)
        return True

    def _refused(self, job: _Job, batch: list[ParsedRow], error: StatementError) -> bool:
        # A value the database refused despite the checks: find the row by syncing one at a time, so
        # one row never stops the import.
        log.warning(
            "import %s: batch at row %s refused (%s); retrying row by row", job.import_id, batch[0][0], error
        )
        return self._commit_rows(job.import_id, job.shop_id, batch, job.write_platform)

    def _commit_rows(
        self, import_id: int, shop_id: int, batch: list[ParsedRow], write_platform: bool
    ) -> bool:
        for row, parsed in batch:
            try:
                if not self._commit_batch_strict(import_id, shop_id, (row, parsed), write_platform):
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
        self, import_id: int, shop_id: int, item: ParsedRow, write_platform: bool
    ) -> bool:
        """One row as a batch of its own, letting a database error reach the caller."""
        row, parsed = item
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


def _push_cost(platform: str) -> float:
    """The platform budget one contact's push takes (PUSH_COST in app/jobs.py)."""
    from app.jobs import PUSH_COST

    return PUSH_COST.get(Platform(platform), 1.0)


def estimated_platform_seconds(rows: int, platform: str, rate: float) -> int:
    """How long writing ``rows`` contacts to the platform takes at the shop's rate:
    ``rows x PUSH_COST[platform] / rate`` seconds."""
    return round(rows * _push_cost(platform) / rate) if rate > 0 else 0


def platform_writes_per_hour(session: Session, shop: Shop, shopline_rate: float) -> int:
    """How many contacts an hour the shop's platform rate lets popsync write (the import page says it
    before the merchant asks for the writes)."""
    return int(3600 * platform_rate(session, shop, shopline_rate) / _push_cost(shop.platform))


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
