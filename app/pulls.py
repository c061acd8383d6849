"""Reading the platform's customers into the contact list: the backfill on install and the daily
reconciliation (webhooks are not guaranteed on either platform).

A pull is a ``CustomerPull`` row and one outbox job (``pull_customers``) that the worker runs step by step.
Each step works for at most ``STEP_SECONDS`` and records where the next one starts, so a pull survives a
restart and never holds a shop's queue for long: a worker that dies mid-step repeats at most the customers
read since the last checkpoint, and mirroring a customer twice changes nothing the second time.

- Shopify backfill: ``bulkOperationRunQuery`` exports every customer as JSONL; the step polls until it is
  ready, then streams it, checkpointing the lines read.
- SHOPLINE backfill and every reconciliation: the paged customer listing, checkpointing the page cursor;
  a reconciliation reads the customers updated since the previous pull started (with an overlap).

Customers are applied exactly as webhooks are (``MirrorService.mirror``): non-empty values only, never
older than the last platform change applied, never written back; an unsubscribe reaches every contact
holding that email or phone (rule 8).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.contacts.normalize import FieldError
from app.contacts.normalize import normalize_country
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_phone
from app.contacts.service import MirroredCustomer
from app.contacts.service import MirrorService
from app.crypto import Keyring
from app.db import Database
from app.enums import OutboxKind
from app.enums import OutboxStatus
from app.enums import Platform
from app.enums import Source
from app.models import CustomerPull
from app.models import OutboxItem
from app.models import Shop
from app.platforms.base import BulkExportStatus
from app.platforms.base import FailedForGood
from app.platforms.base import PlatformCustomer

log = logging.getLogger("popsync.pulls")

BACKFILL = "backfill"
RECONCILE = "reconcile"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ACTIVE = (QUEUED, RUNNING)

STEP_SECONDS = 20.0  # one step works at most this long, then checkpoints and lets other jobs run
CHECKPOINT_EVERY = 200  # customers between progress records within a step
BULK_POLL_SECONDS = 5.0  # how soon to look again at a bulk export that is still running
# A reconciliation re-reads a little before the previous pull started: a customer changed while that pull
# was reading may have been listed before its change. Mirroring it twice is harmless.
RECONCILE_OVERLAP = timedelta(minutes=10)
EXPORT_URL_PURPOSE = "bulk-export-url"
PULL_PRIORITY = 200  # after pushes (100), identify jobs (50) and webhooks: a pull is never urgent


@dataclass(frozen=True)
class _Step:
    pull_id: int
    shop_id: int
    region: str | None
    deadline: float  # time.monotonic() after which the step checkpoints and hands back


@dataclass(frozen=True)
class StepOutcome:
    """What one step came to: finished, or the seconds until the next step should run."""

    done: bool
    wait: float = 0.0


def enqueue_pull(session: Session, shop_id: int, kind: str, now: datetime) -> CustomerPull:
    since = None
    if kind == RECONCILE:
        last_started = session.scalar(
            sa.select(sa.func.max(CustomerPull.started_at)).where(
                CustomerPull.shop_id == shop_id, CustomerPull.status == DONE
            )
        )
        since = (last_started or now) - RECONCILE_OVERLAP
    pull = CustomerPull(shop_id=shop_id, kind=kind, status=QUEUED, updated_since=since, created_at=now)
    session.add(pull)
    session.flush()
    session.add(
        OutboxItem(
            shop_id=shop_id,
            kind=OutboxKind.PULL_CUSTOMERS,
            payload={"pull_id": pull.id},
            priority=PULL_PRIORITY,
            due_at=now,
        )
    )
    return pull


def active_pull(session: Session, shop_id: int) -> CustomerPull | None:
    return session.scalars(
        sa.select(CustomerPull).where(CustomerPull.shop_id == shop_id, CustomerPull.status.in_(ACTIVE))
    ).first()


def start_backfill(session: Session, shop: Shop, now: datetime) -> CustomerPull | None:
    """Queue a backfill of every platform customer when the shop has had none since it was (re)installed
    and no pull is under way. Called wherever a shop's token is stored, so an install, a reinstall and
    ``popsync shops add`` each bring the existing customers in, and a token renewed later does not."""
    if active_pull(session, shop.id) is not None:
        return None
    since_install = session.scalar(
        sa.select(CustomerPull.id)
        .where(
            CustomerPull.shop_id == shop.id,
            CustomerPull.kind == BACKFILL,
            CustomerPull.created_at >= shop.installed_at,
        )
        .limit(1)
    )
    if since_install is not None:
        return None
    return enqueue_pull(session, shop.id, BACKFILL, now)


def start_reconcile(session: Session, shop_id: int, now: datetime) -> CustomerPull | None:
    """Queue the daily reconciliation: the customers updated since the last finished pull started. A shop
    that never finished a pull (installed before backfills existed, or its backfill failed) gets a backfill
    instead. Nothing when a pull is already under way."""
    if active_pull(session, shop_id) is not None:
        return None
    finished = session.scalar(
        sa.select(CustomerPull.id)
        .where(CustomerPull.shop_id == shop_id, CustomerPull.status == DONE)
        .limit(1)
    )
    return enqueue_pull(session, shop_id, RECONCILE if finished else BACKFILL, now)


def pull_json(pull: CustomerPull) -> dict[str, Any]:
    """A pull as the merchant sees it: what it does and how far it got (never the cursor: it may hold
    signed URLs)."""
    return {
        "id": pull.id,
        "kind": pull.kind,
        "status": pull.status,
        "updated_since": pull.updated_since.isoformat() if pull.updated_since else None,
        "total": pull.total,
        "processed": pull.processed,
        "created": pull.created,
        "updated": pull.updated,
        "error": pull.error,
        "created_at": pull.created_at.isoformat(),
        "started_at": pull.started_at.isoformat() if pull.started_at else None,
        "finished_at": pull.finished_at.isoformat() if pull.finished_at else None,
    }


def mirrored(customer: PlatformCustomer, region: str | None) -> MirroredCustomer:
    """A listed customer in the mirror's terms: invalid values are dropped, not guessed at."""

    def clean(normalize: Callable[[str], str | None], value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalize(value)
        except FieldError:
            return None

    def text(value: str | None) -> str | None:
        return value.strip()[:255] or None if value else None

    return MirroredCustomer(
        id=customer.id,
        updated_at=customer.updated_at,
        email=clean(normalize_email, customer.email),
        phone=clean(lambda value: normalize_phone(value, region), customer.phone),
        first_name=text(customer.first_name),
        last_name=text(customer.last_name),
        country=clean(normalize_country, customer.country),
    )


class PullRunner:
    """Runs the steps of one pull against the shop's platform client."""

    def __init__(
        self,
        db: Database,
        mirror: MirrorService,
        keyring: Keyring,
        *,
        clock: Callable[[], datetime],
        step_seconds: float = STEP_SECONDS,
    ) -> None:
        self.db = db
        self.mirror = mirror
        self.keyring = keyring
        self.clock = clock
        self.step_seconds = step_seconds

    def step(self, pull_id: int, client: Any) -> StepOutcome:
        """One step of the pull. Platform errors (RetryLater, AuthFailed, FailedForGood) propagate to the
        worker, which retries or gives up as for any job; the checkpoint already recorded is kept."""
        with self.db.write_transaction() as session:
            pull = session.get(CustomerPull, pull_id)
            if pull is None or pull.status not in ACTIVE:
                return StepOutcome(done=True)
            shop = session.get(Shop, pull.shop_id)
            if shop is None:
                return StepOutcome(done=True)
            if pull.status == QUEUED:
                pull.status = RUNNING
                pull.started_at = self.clock()
            kind, cursor, since = pull.kind, dict(pull.cursor or {}), pull.updated_since
            run = _Step(pull_id, shop.id, shop.region, time.monotonic() + self.step_seconds)
            platform = shop.platform
        if kind == BACKFILL and platform == Platform.SHOPIFY:
            return self._bulk_step(run, client, cursor)
        return self._paged_step(run, client, cursor, since)

    def fail(self, pull_id: int, reason: str) -> None:
        with self.db.write_transaction() as session:
            pull = session.get(CustomerPull, pull_id)
            if pull is not None and pull.status in ACTIVE:
                pull.status = FAILED
                pull.error = reason
                pull.finished_at = self.clock()

    # -- Shopify's bulk export ---------------------------------------------------------------------------

    def _bulk_step(self, run: _Step, client: Any, cursor: dict[str, Any]) -> StepOutcome:
        pull_id = run.pull_id
        if "bulk_id" not in cursor:
            export = client.start_bulk_export()
            self._checkpoint(pull_id, {"bulk_id": export.id})
            return StepOutcome(done=False, wait=BULK_POLL_SECONDS)
        if "url" not in cursor:
            export = client.bulk_export(cursor["bulk_id"])
            if export.status is BulkExportStatus.RUNNING:
                return StepOutcome(done=False, wait=BULK_POLL_SECONDS)
            if export.status is BulkExportStatus.FAILED:
                raise FailedForGood(
                    f"Shopify's export of the customers failed: {export.error or 'no reason'}"
                )
            if export.url is None:  # a shop without customers
                self._finish(pull_id, total=0)
                return StepOutcome(done=True)
            # The result's URL is signed: whoever holds it reads every customer for days. Sealed at rest.
            sealed_url = self.keyring.seal_text(EXPORT_URL_PURPOSE, export.url)
            cursor = {"bulk_id": export.id, "url": sealed_url, "lines": 0}
            self._checkpoint(pull_id, cursor, total=export.object_count)
        lines = int(cursor.get("lines", 0))
        try:
            url = self.keyring.open_text(EXPORT_URL_PURPOSE, cursor["url"])
            customers = client.read_bulk_export(url, skip=lines)
            finished, read = self._apply_until(run, customers, cursor, "lines")
        except FailedForGood as error:
            # The result's signed URL expired (a pull paused for days): export again, keeping the counts;
            # customers already applied are applied again harmlessly.
            log.warning("pull %s: the export could not be read (%s); exporting again", pull_id, error)
            self._checkpoint(pull_id, {})
            return StepOutcome(done=False)
        if finished:
            self._finish(pull_id)
            return StepOutcome(done=True)
        log.debug("pull %s: %d lines read this step", pull_id, read)
        return StepOutcome(done=False)

    # -- the paged listing -------------------------------------------------------------------------------

    def _paged_step(
        self, run: _Step, client: Any, cursor: dict[str, Any], since: datetime | None
    ) -> StepOutcome:
        page_cursor = cursor.get("page")
        while True:
            page = client.list_customers(updated_since=since, cursor=page_cursor)
            counts = self._apply(run, page.customers)
            page_cursor = page.next_cursor
            self._checkpoint(run.pull_id, {"page": page_cursor}, counts=counts)
            if page_cursor is None:
                self._finish(run.pull_id)
                return StepOutcome(done=True)
            if time.monotonic() >= run.deadline:
                return StepOutcome(done=False)

    # -- applying and recording ------------------------------------------------------------------------

    def _apply_until(
        self, run: _Step, customers: Iterable[PlatformCustomer], cursor: dict[str, Any], position: str
    ) -> tuple[bool, int]:
        """Apply streamed customers, checkpointing every CHECKPOINT_EVERY; (reached the end, how many)."""
        batch: list[PlatformCustomer] = []
        read = 0
        for customer in customers:
            batch.append(customer)
            if len(batch) >= CHECKPOINT_EVERY:
                read += len(batch)
                cursor = {**cursor, position: int(cursor.get(position, 0)) + len(batch)}
                self._checkpoint(run.pull_id, cursor, counts=self._apply(run, batch))
                batch = []
                if time.monotonic() >= run.deadline:
                    return False, read
        read += len(batch)
        cursor = {**cursor, position: int(cursor.get(position, 0)) + len(batch)}
        self._checkpoint(run.pull_id, cursor, counts=self._apply(run, batch))
        return True, read

    def _apply(self, run: _Step, customers: Iterable[PlatformCustomer]) -> tuple[int, int, int]:
        """Mirror each customer; (processed, created, updated)."""
        processed = created = updated = 0
        shop_id = run.shop_id
        for customer in customers:
            processed += 1
            applied = mirrored(customer, run.region)
            outcome = self.mirror.mirror(shop_id, applied, event={"pull": True})
            if outcome == "created":
                created += 1
            elif outcome in ("applied", "linked"):
                updated += 1
            if outcome.startswith("ignored: not newer"):
                continue  # an unsubscribe in an old state of the customer is not news either
            for channel, identifier, consent in (
                ("email", applied.email, customer.email_consent),
                ("sms", applied.phone, customer.sms_consent),
            ):
                if identifier and consent == "unsubscribed":
                    self.mirror.unsubscribe_identifier(shop_id, channel, identifier, source=Source.PLATFORM)
        return processed, created, updated

    def _checkpoint(
        self,
        pull_id: int,
        cursor: dict[str, Any],
        *,
        counts: tuple[int, int, int] = (0, 0, 0),
        total: int | None = None,
    ) -> None:
        with self.db.write_transaction() as session:
            pull = session.get(CustomerPull, pull_id)
            if pull is None:
                return
            pull.cursor = cursor
            pull.processed += counts[0]
            pull.created += counts[1]
            pull.updated += counts[2]
            if total is not None:
                pull.total = total

    def _finish(self, pull_id: int, *, total: int | None = None) -> None:
        with self.db.write_transaction() as session:
            pull = session.get(CustomerPull, pull_id)
            if pull is None:
                return
            pull.status = DONE
            pull.finished_at = self.clock()
            pull.cursor = {}
            if total is not None:
                pull.total = total


def fail_pull_of(session: Session, row: OutboxItem, reason: str, now: datetime) -> None:
    """The worker gave a pull's job up: the merchant sees the pull failed, with why."""
    if row.kind != OutboxKind.PULL_CUSTOMERS:
        return
    pull = session.get(CustomerPull, int(row.payload.get("pull_id") or 0))
    if pull is not None and pull.status in ACTIVE:
        pull.status = FAILED
        pull.error = reason
        pull.finished_at = now


def schedule_daily_jobs(db: Database, now: datetime, *, limit: int = 100) -> int:
    """Start the daily jobs of every installed shop whose day has come: the reconciliation and, on
    SHOPLINE, the webhook subscriptions' re-check (SHOPLINE deletes a subscription after 19 failed
    deliveries). Safe with many workers: each shop's row is claimed with SKIP LOCKED and moved a day on.
    Also forgets used signatures past their window. Returns how many shops were scheduled."""
    from app.models import UsedSignature

    with db.write_transaction() as session:
        due = session.scalars(
            sa.select(Shop)
            .where(
                Shop.uninstalled_at.is_(None),
                Shop.access_token.is_not(None),
                Shop.needs_reauth.is_(False),
                sa.or_(Shop.daily_due_at.is_(None), Shop.daily_due_at <= now),
            )
            .order_by(Shop.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for shop in due:
            first_time = shop.daily_due_at is None
            shop.daily_due_at = now + timedelta(days=1)
            if first_time and active_pull(session, shop.id) is not None:
                continue  # installed just now: its backfill is the day's pull
            start_reconcile(session, shop.id, now)
            if shop.platform == Platform.SHOPLINE:
                session.add(
                    OutboxItem(
                        shop_id=shop.id,
                        kind=OutboxKind.CHECK_WEBHOOKS,
                        payload={},
                        priority=PULL_PRIORITY,
                        due_at=now,
                    )
                )
        session.execute(sa.delete(UsedSignature).where(UsedSignature.expires_at < now))
        return len(due)


def pending_pull_jobs(session: Session, shop_id: int) -> int:
    """How many pull jobs of the shop wait in the outbox (tests, diagnostics)."""
    return (
        session.scalar(
            sa.select(sa.func.count(OutboxItem.id)).where(
                OutboxItem.shop_id == shop_id,
                OutboxItem.kind == OutboxKind.PULL_CUSTOMERS,
                OutboxItem.status.in_((OutboxStatus.PENDING, OutboxStatus.RUNNING)),
            )
        )
        or 0
    )
