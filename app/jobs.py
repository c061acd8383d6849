"""The outbox worker: claims due rows, writes to the platforms, retries with back-off, dead-letters.

Many workers can run side by side on PostgreSQL: a row is claimed with ``FOR UPDATE SKIP LOCKED`` and
leased; a row whose worker died is reclaimed when its lease runs out. Claims go round the shops one row at
a time, so one shop's backlog never starves the others; a shop whose rate budget is spent is skipped, not
slept on. A contact is never pushed by two workers at once.

A push holds no transaction while it talks to the platform: it reads a snapshot of the contact, calls the
platform, then records the outcome in a short transaction that clears only what it wrote (a sync that
changed the contact meanwhile leaves its own fields pending for the next push).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.contacts.normalize import FieldError
from app.contacts.normalize import normalize_email
from app.contacts.rules import Collected
from app.contacts.service import PLATFORM_FIELDS
from app.contacts.service import ContactService
from app.contacts.service import MirrorService
from app.contacts.service import enqueue_pushes
from app.crypto import Keyring
from app.db import Database
from app.db import utcnow
from app.enums import Consent
from app.enums import OutboxKind
from app.enums import OutboxStatus
from app.enums import Platform
from app.enums import Source
from app.enums import SyncStatus
from app.models import Contact
from app.models import OutboxItem
from app.models import Shop
from app.models import WebhookDelivery
from app.ops.retention import EventPruner
from app.platforms import client_for
from app.platforms.base import AuthFailed
from app.platforms.base import FailedForGood
from app.platforms.base import PlatformClient
from app.platforms.base import PushOutcome
from app.platforms.base import PushResult
from app.platforms.base import RetryLater
from app.platforms.budget import RateBudget
from app.platforms.push import CONSENT_IDENTIFIER
from app.platforms.push import ContactSnapshot
from app.platforms.push import push_contact
from app.platforms.tokens import refresh_if_due
from app.pulls import PullRunner
from app.pulls import fail_pull_of
from app.pulls import schedule_daily_jobs
from app.tracking.drain import HitDrain

log = logging.getLogger("popsync.worker")

BASE_BACKOFF = 1.0  # seconds before the first retry; doubles each attempt, with jitter
MAX_BACKOFF = 300.0
# A push costs about this much of the shop's budget (Shopify points, SHOPLINE requests); a shop whose
# bucket cannot hold it is skipped this round rather than started and interrupted half-way.
PUSH_COST = {Platform.SHOPIFY: 40.0, Platform.SHOPLINE: 4.0}
SCHEDULE_CHECK_SECONDS = 60.0  # how often a worker looks for shops whose daily jobs are due

ClientFactory = Callable[[Shop], PlatformClient]


@dataclass(frozen=True)
class Claim:
    id: int
    shop_id: int
    contact_id: int | None
    kind: str
    payload: dict[str, Any]
    attempts: int
    first_failed_at: datetime | None
    # The lease this worker holds: an outcome is recorded only while the row still carries it (a row
    # reclaimed after its lease ran out belongs to whoever claimed it next).
    leased_until: datetime


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        keyring: Keyring,
        contacts: ContactService,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        client_factory: ClientFactory | None = None,
        base_backoff: float = BASE_BACKOFF,
        schedule_daily: bool = False,
    ) -> None:
        """``schedule_daily``: also start the shops' daily jobs when due (the ``popsync worker`` and
        ``serve`` processes do; tests that drive a worker by hand leave it off)."""
        self.db = db
        self.settings = settings
        self.keyring = keyring
        self.contacts = contacts
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not security)
        self.budget = RateBudget(db, clock)
        self.base_backoff = base_backoff
        self._session = requests.Session()
        self.client_factory = client_factory or self._default_client
        self._budget_ready_in: float | None = None
        self.mirror = MirrorService(contacts)
        self.pulls = PullRunner(db, self.mirror, keyring, clock=clock)
        self.schedule_daily = schedule_daily
        self._next_schedule_check = 0.0
        # --- tracking (app/tracking/drain.py): opens and clicks become syncs in batches, beside the outbox.
        self.hits = HitDrain(contacts)
        # --- retention (app/ops/retention.py): old contact events go, a bounded slice a round.
        self.pruner = EventPruner(db, settings.event_retention_days, clock=clock)

    def _default_client(self, shop: Shop) -> PlatformClient:
        return client_for(
            shop, settings=self.settings, keyring=self.keyring, budget=self.budget, session=self._session
        )

    # --- the loop ------------------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False, stop: threading.Event | None = None) -> int:
        """Work until stopped (or, with ``until_idle``, until nothing is due); returns rows processed."""
        stop = stop or threading.Event()
        processed = 0
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:
                # The database went away or a bug: keep the worker alive, try again after a pause.
                log.exception("worker round failed")
                stop.wait(self.settings.worker_poll_interval)
                continue
            processed += done
            if done:
                continue
            if until_idle:
                return processed
            stop.wait(self._idle_wait())
        return processed

    def _idle_wait(self) -> float:
        """Nothing was claimable: wait for the poll interval, or less when a throttled shop's budget will
        hold a push sooner (waiting longer would leave the platform's rate unused)."""
        wait = self.settings.worker_poll_interval
        if self._budget_ready_in is not None:
            wait = min(wait, max(self._budget_ready_in, 0.005))
        return wait

    def drain(self, timeout: float = 60.0) -> int:
        """Work until no row is pending or running at all, waiting out back-offs (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        processed = 0
        while time.monotonic() < deadline:
            done = self.run_once()
            processed += done
            if done:
                continue
            wait = self.seconds_until_due()
            if wait is None:
                return processed
            time.sleep(min(max(wait, 0.01), self._idle_wait()))
        raise TimeoutError(f"outbox not drained in {timeout} s")

    def run_once(self, shops: int = 20) -> int:
        """One round: start due daily jobs, reclaim expired leases, claim up to one due row per shop,
        process them."""
        pruned = 0
        if self.schedule_daily:
            if time.monotonic() >= self._next_schedule_check:
                self._next_schedule_check = time.monotonic() + SCHEDULE_CHECK_SECONDS
                schedule_daily_jobs(self.db, self.clock())
            pruned = self.pruner.run_once()
        self.reclaim_expired()
        claims = self.claim(shops)
        for claim in claims:
            self.process(claim)
        # tracking: the hits synced this round; retention: a slice of old events deleted counts as work done
        return len(claims) + self.hits.run_once() + (1 if pruned else 0)

    def seconds_until_due(self) -> float | None:
        """Seconds until the next pending or leased row is due; None when the outbox is empty."""
        with self.db.sessionmaker() as session:
            pending = session.scalar(
                sa.select(sa.func.min(OutboxItem.due_at)).where(OutboxItem.status == OutboxStatus.PENDING)
            )
            leased = session.scalar(
                sa.select(sa.func.min(OutboxItem.leased_until)).where(
                    OutboxItem.status == OutboxStatus.RUNNING
                )
            )
        moments = [m for m in (pending, leased) if m is not None]
        if not moments:
            return None
        return max(0.0, (min(moments) - self.clock()).total_seconds())

    # --- claiming ------------------------------------------------------------------------------------

    def reclaim_expired(self) -> int:
        """Rows leased by a worker that died go back to pending (they are re-run, looking before creating)."""
        now = self.clock()
        with self.db.write_transaction() as session:
            expired = session.scalars(
                sa.select(OutboxItem)
                .where(OutboxItem.status == OutboxStatus.RUNNING, OutboxItem.leased_until < now)
                .with_for_update(skip_locked=True)
            ).all()
            for row in expired:
                # A worker that died mid-job counts as a failed attempt: a job that kills its worker
                # backs off and is given up like any other failure instead of looping.
                row.first_failed_at = row.first_failed_at or now
                row.last_error = "the worker running it stopped"
                if (now - row.first_failed_at).total_seconds() >= self.settings.sync_give_up_after:
                    row.status = OutboxStatus.DEAD
                    row.leased_until = None
                    _fail_contact(session, row.contact_id, "gave up: the job kept stopping its worker")
                    fail_pull_of(session, row, "gave up: the job kept stopping its worker", now)
                    continue
                _return_to_pending(session, row, due_at=now + timedelta(seconds=self._backoff(row.attempts)))
            if expired:
                log.warning("reclaimed %d rows whose worker stopped", len(expired))
            return len(expired)

    def claim(self, shops: int) -> list[Claim]:
        now = self.clock()
        with self.db.sessionmaker() as session:
            due_shops = session.execute(
                sa.select(OutboxItem.shop_id, Shop.platform)
                .join(Shop, Shop.id == OutboxItem.shop_id)
                .where(OutboxItem.status == OutboxStatus.PENDING, OutboxItem.due_at <= now)
                .group_by(OutboxItem.shop_id, Shop.platform)
                .order_by(sa.func.min(OutboxItem.priority), sa.func.min(OutboxItem.due_at))
                .limit(shops)
            ).all()
        claims = []
        self._budget_ready_in = None
        for shop_id, platform in due_shops:
            wait = self.budget.wait_for(shop_id, PUSH_COST.get(Platform(platform), 1.0))
            if wait > 0:
                # Throttled: skip the shop this round and serve the others; remember when it can go again.
                self._budget_ready_in = min(wait, self._budget_ready_in or wait)
                continue
            claim = self._claim_one(shop_id, now)
            if claim is not None:
                claims.append(claim)
        return claims

    def _claim_one(self, shop_id: int, now: datetime) -> Claim | None:
        running = sa.orm.aliased(OutboxItem)
        busy_contact = (
            sa.select(running.id)
            .where(running.contact_id == OutboxItem.contact_id, running.status == OutboxStatus.RUNNING)
            .exists()
        )
        with self.db.write_transaction() as session:
            row = session.scalars(
                sa.select(OutboxItem)
                .where(
                    OutboxItem.shop_id == shop_id,
                    OutboxItem.status == OutboxStatus.PENDING,
                    OutboxItem.due_at <= now,
                    sa.or_(OutboxItem.contact_id.is_(None), ~busy_contact),
                )
                .order_by(OutboxItem.priority, OutboxItem.due_at, OutboxItem.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            row.status = OutboxStatus.RUNNING
            row.leased_until = now + timedelta(seconds=self.settings.worker_lease)
            row.attempts += 1
            return Claim(
                row.id,
                row.shop_id,
                row.contact_id,
                row.kind,
                dict(row.payload),
                row.attempts,
                row.first_failed_at,
                row.leased_until,
            )

    # --- processing ----------------------------------------------------------------------------------

    def process(self, claim: Claim) -> None:
        try:
            if claim.kind == OutboxKind.PUSH_CONTACT:
                self._push(claim)
            elif claim.kind == OutboxKind.IDENTIFY_CUSTOMER:
                self._identify(claim)
            elif claim.kind == OutboxKind.WEBHOOK:
                self._webhook(claim)
            elif claim.kind == OutboxKind.PULL_CUSTOMERS:
                self._pull(claim)
            elif claim.kind == OutboxKind.CHECK_WEBHOOKS:
                self._check_webhooks(claim)
            elif claim.kind == OutboxKind.IMPORT_CONTACTS:
                self._import(claim)
            else:
                self._finish(claim, OutboxStatus.DEAD, error=f"unknown job kind {claim.kind!r}")
        except Exception:
            # A bug, not the platform: keep the row (it is retried and, past the give-up time, dead-lettered).
            log.exception("outbox row %s failed unexpectedly", claim.id)
            self._after_failure(
                claim,
                RetryLater("internal error", self._backoff(claim.attempts)),
                contact_id=claim.contact_id,
            )

    def _load(self, claim: Claim) -> tuple[Shop | None, Contact | None]:
        with self.db.sessionmaker() as session:
            shop = session.get(Shop, claim.shop_id)
            contact = session.get(Contact, claim.contact_id) if claim.contact_id else None
            return shop, contact

    def _push(self, claim: Claim) -> None:
        shop, contact = self._load(claim)
        if contact is None:
            self._finish(claim, OutboxStatus.DONE)  # deleted meanwhile: the platform customer is left alone
            return
        if shop is None or not shop.installed:
            self._finish(claim, OutboxStatus.DEAD, error="the store uninstalled popsync")
            return
        snapshot = _snapshot(contact)
        if not snapshot.values and not snapshot.tags and contact.platform_customer_id:
            self._record(
                claim, snapshot, PushResult(PushOutcome.UPDATED, detail="nothing left to write"), None
            )
            return
        try:
            client = self._client(shop)
            result = push_contact(client, snapshot)
        except RetryLater as retry:
            self._after_failure(claim, retry, contact_id=contact.id)
            return
        except AuthFailed as error:
            self._token_refused(claim, shop, str(error), contact_id=contact.id)
            return
        except FailedForGood as error:
            result = PushResult(PushOutcome.FAILED, detail=f"the platform refused the write: {error}")
        metrics.record_platform_write(shop.platform, result.outcome.value)
        self._record(claim, snapshot, result, getattr(client, "state", None))

    def _record(
        self, claim: Claim, snapshot: ContactSnapshot, result: PushResult, client_state: dict[str, Any] | None
    ) -> None:
        with self.db.write_transaction() as session:
            row = _owned_row(session, claim)
            if row is None:
                return
            contact = session.scalars(
                sa.select(Contact).where(Contact.id == claim.contact_id).with_for_update()
            ).first()
            if client_state is not None:
                shop = session.get(Shop, claim.shop_id)
                if shop is not None and shop.platform_state != client_state:
                    shop.platform_state = client_state
            row.status = OutboxStatus.DONE
            row.leased_until = None
            row.last_error = None
            if contact is None:
                return
            if result.outcome is PushOutcome.FAILED:
                row.status = OutboxStatus.DEAD
                row.last_error = result.detail
                contact.sync_status = SyncStatus.FAILED
                contact.sync_detail = result.detail
                return
            if result.outcome is PushOutcome.NOTHING:
                # Nothing was written: it all stays pending for the next sync or the merchant's retry.
                contact.platform_customer_id = None
                contact.sync_status = SyncStatus.CONFLICT
                contact.sync_detail = result.detail
                return
            if result.customer is not None:
                contact.platform_customer_id = result.customer.id
                if result.customer.updated_at is not None:
                    contact.platform_updated_at = result.customer.updated_at
            # Clear only what went out, and only if a sync did not change it again while we were away.
            sent = snapshot.all_values if result.outcome is PushOutcome.CREATED else snapshot.values
            contact.pending_fields = [
                name
                for name in contact.pending_fields
                if name not in result.written or _current(contact, name) != sent.get(name)
            ]
            contact.pending_tags = [tag for tag in contact.pending_tags if tag not in result.tags_written]
            # Identifiers another customer holds (and the consent that needs them) stay pending, waiting for
            # the next sync or a retry: pushing them again now would only meet the same conflict.
            held = set(result.conflicts) | {
                consent
                for consent, identifier in CONSENT_IDENTIFIER.items()
                if identifier in result.conflicts
            }
            if result.conflicts:
                contact.sync_status = SyncStatus.CONFLICT
                contact.sync_detail = result.detail
            else:
                contact.sync_status = SyncStatus.SYNCED
                contact.sync_detail = None
            if set(contact.pending_fields) - held or contact.pending_tags:
                if not result.conflicts:
                    contact.sync_status = SyncStatus.PENDING
                session.flush()
                enqueue_pushes(session, claim.shop_id, [contact.id], self.clock())

    def _identify(self, claim: Claim) -> None:
        """Rule 1: fetch the logged-in customer and sync with its email and phone as the identifiers."""
        shop, _ = self._load(claim)
        if shop is None or not shop.installed:
            self._finish(claim, OutboxStatus.DEAD, error="the store uninstalled popsync")
            return
        payload = claim.payload
        try:
            customer = self._client(shop).fetch_customer(str(payload["customer_id"]))
        except RetryLater as retry:
            self._after_failure(claim, retry, contact_id=None)
            return
        except AuthFailed as error:
            self._token_refused(claim, shop, str(error), contact_id=None)
            return
        except FailedForGood as error:
            self._finish(claim, OutboxStatus.DEAD, error=str(error))
            return
        email = None
        if customer is not None and customer.email:
            try:
                email = normalize_email(customer.email)
            except FieldError:
                email = None
        if customer is None or not (email or customer.phone):
            self._finish(claim, OutboxStatus.DONE, error="the logged-in customer has no email or phone")
            return
        values = dict(payload.get("values") or {})
        if values.get("birthday"):
            values["birthday"] = datetime.fromisoformat(values["birthday"]).date()
        collected = Collected(
            email=email, phone=customer.phone, tags=tuple(payload.get("tags") or ()), **values
        )
        self.contacts.sync(
            shop.id,
            collected,
            source=Source(payload.get("source", Source.FORM)),
            evidence=payload.get("evidence") or {},
            write_platform=bool(payload.get("write_platform", True)),
            link_customer_id=customer.id,
            # The identifiers came from the platform, not from the shopper: they lift no erasure (rule 11).
            lift_suppression=False,
        )
        self._finish(claim, OutboxStatus.DONE)

    def _webhook(self, claim: Claim) -> None:
        """Hand a recorded webhook to its topic's handler (app/webhooks/handlers.py)."""
        from app.webhooks.handlers import HANDLERS
        from app.webhooks.handlers import WebhookContext

        with self.db.sessionmaker() as session:
            delivery = session.get(WebhookDelivery, claim.payload.get("delivery_id"))
            shop = session.get(Shop, claim.shop_id)
        if delivery is None or shop is None:
            self._finish(claim, OutboxStatus.DONE, error="the delivery or its shop is gone")
            return
        handler = HANDLERS.get(delivery.platform, {}).get(delivery.topic)
        if handler is None:
            self._finish(claim, OutboxStatus.DONE, error=f"no handler for {delivery.topic}")
            return
        context = WebhookContext(self.mirror, shop, delivery.platform, delivery.id)
        outcome = handler(context, dict(delivery.payload))
        log.info("webhook %s %s: %s", delivery.platform, delivery.topic, outcome)
        with self.db.write_transaction() as session:
            recorded = session.get(WebhookDelivery, delivery.id)
            if recorded is not None:
                recorded.processed_at = self.clock()
        self._finish(claim, OutboxStatus.DONE)

    def _pull(self, claim: Claim) -> None:
        """One step of a backfill or reconciliation (app/pulls.py); the job comes back until it is done."""
        pull_id = int(claim.payload.get("pull_id") or 0)
        shop, _ = self._load(claim)
        if shop is None or not shop.installed:
            self.pulls.fail(pull_id, "the store uninstalled popsync")
            self._finish(claim, OutboxStatus.DEAD, error="the store uninstalled popsync")
            return
        try:
            outcome = self.pulls.step(pull_id, self._client(shop))
        except RetryLater as retry:
            self._after_failure(claim, retry, contact_id=None)
            return
        except AuthFailed as error:
            self._token_refused(claim, shop, str(error), contact_id=None)
            return
        except FailedForGood as error:
            self.pulls.fail(pull_id, str(error))
            self._finish(claim, OutboxStatus.DEAD, error=str(error))
            return
        if outcome.done:
            self._finish(claim, OutboxStatus.DONE)
        else:
            self._continue(claim, outcome.wait)

    def _check_webhooks(self, claim: Claim) -> None:
        """SHOPLINE's daily re-check: subscribe again what SHOPLINE deleted after failed deliveries."""
        from app.platforms.shopline_webhooks import check_shop

        try:
            changes = check_shop(
                self.db, self.settings, self.keyring, claim.shop_id, budget=self.budget, session=self._session
            )
        except RetryLater as retry:
            self._after_failure(claim, retry, contact_id=None)
            return
        except (AuthFailed, FailedForGood) as error:
            self._finish(claim, OutboxStatus.DEAD, error=str(error))
            return
        if changes is not None:
            for topic, reason in changes.failed.items():
                log.warning("SHOPLINE refused the %s webhook for shop %s: %s", topic, claim.shop_id, reason)
        self._finish(claim, OutboxStatus.DONE)

    # --- imports (app/imports.py) ---------------------------------------------------------------------

    def _import(self, claim: Claim) -> None:
        """A step of a merchant's CSV import; the job comes back until the whole file is in."""
        from app.imports import ImportRunner

        runner = ImportRunner(self.db, self.contacts, clock=self.clock)
        if runner.step(int(claim.payload.get("import_id") or 0)):
            self._finish(claim, OutboxStatus.DONE)
        else:
            self._continue(claim, 0.0)

    def _client(self, shop: Shop) -> PlatformClient:
        """The shop's client, after refreshing a token that is about to expire (SHOPLINE's live 10 hours,
        Shopify's expiring offline tokens one hour)."""
        if refresh_if_due(
            self.db, self.keyring, self.settings, shop.id, session=self._session, clock=self.clock
        ):
            with self.db.sessionmaker() as session:
                shop = session.get(Shop, shop.id) or shop
        # Every platform failure counted by kind (GET /metrics), whichever job met it.
        return metrics.CountingClient(self.client_factory(shop), shop.platform)  # type: ignore[return-value]

    def _token_refused(self, claim: Claim, shop: Shop, reason: str, *, contact_id: int | None) -> None:
        """A refused token: refresh it once if the platform allows (then the job runs again at once);
        otherwise the shop needs re-authorisation."""
        try:
            refreshed = refresh_if_due(
                self.db,
                self.keyring,
                self.settings,
                shop.id,
                refused_token=shop.access_token,
                session=self._session,
                clock=self.clock,
            )
        except RetryLater as retry:
            self._after_failure(claim, retry, contact_id=contact_id)
            return
        except (AuthFailed, FailedForGood) as error:
            reason = f"{reason}; the refresh failed too: {error}"
            refreshed = False
        if refreshed:
            # Not throttled: a token refused again and again backs off and is given up like a failure.
            self._after_failure(claim, RetryLater("the token was refreshed", 0), contact_id=contact_id)
            return
        self._shop_needs_reauth(claim, reason, refused_token=shop.access_token)

    # --- outcomes ------------------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> float:
        delay = min(MAX_BACKOFF, self.base_backoff * 2 ** max(0, attempts - 1))
        return delay * (0.5 + self.rng.random() / 2)

    def _after_failure(self, claim: Claim, retry: RetryLater, *, contact_id: int | None) -> None:
        now = self.clock()
        with self.db.write_transaction() as session:
            row = _owned_row(session, claim)
            if row is None:
                return
            row.last_error = str(retry)
            if retry.throttled:
                # Throttling is the platform pacing us, not a failure: no back-off growth, no give-up clock.
                row.attempts = max(0, row.attempts - 1)
                _return_to_pending(session, row, due_at=now + timedelta(seconds=max(retry.seconds, 0.05)))
                return
            first_failed_at = row.first_failed_at or now
            row.first_failed_at = first_failed_at
            if (now - first_failed_at).total_seconds() >= self.settings.sync_give_up_after:
                row.status = OutboxStatus.DEAD
                row.leased_until = None
                reason = f"gave up after {self.settings.sync_give_up_after} s of failures: {retry}"
                _fail_contact(session, contact_id, reason)
                fail_pull_of(session, row, reason, now)
                return
            delay = max(retry.seconds, self._backoff(row.attempts))
            _return_to_pending(session, row, due_at=now + timedelta(seconds=delay))

    def _shop_needs_reauth(self, claim: Claim, reason: str, *, refused_token: str | None = None) -> None:
        """The token was refused: park the shop's writes until it is restored (they are queued again then).

        ``refused_token`` is the sealed token that was refused: when the shop holds another one by now (a
        re-install or ``popsync shops add`` while this worker was failing), the restore has already queued
        the failed writes, so this one is not parked but run again at once with the new token."""
        with self.db.write_transaction() as session:
            shop = session.scalars(sa.select(Shop).where(Shop.id == claim.shop_id).with_for_update()).first()
            if shop is not None and refused_token is not None and shop.access_token != refused_token:
                row = _owned_row(session, claim)
                if row is not None:
                    row.last_error = "the token was replaced while it was being refused"
                    _return_to_pending(session, row, due_at=self.clock())
                return
            if shop is not None:
                shop.needs_reauth = True
            row = _owned_row(session, claim)
            if row is not None:
                row.status = OutboxStatus.DEAD
                row.leased_until = None
                row.last_error = reason
                fail_pull_of(session, row, "the store's access was revoked", self.clock())
            _fail_contact(
                session,
                claim.contact_id,
                "the store's access was revoked: popsync needs to be authorised again",
            )
        log.warning("shop %s needs re-authorisation: %s", claim.shop_id, reason)

    def _continue(self, claim: Claim, wait: float) -> None:
        """A long job made progress: run its next step after ``wait`` seconds, with a clean failure record
        (the back-off and give-up clock measure failures in a row, not the job's length)."""
        with self.db.write_transaction() as session:
            row = _owned_row(session, claim)
            if row is None:
                return
            row.attempts = 0
            row.first_failed_at = None
            row.last_error = None
            _return_to_pending(session, row, due_at=self.clock() + timedelta(seconds=wait))

    def _finish(self, claim: Claim, status: OutboxStatus, error: str | None = None) -> None:
        with self.db.write_transaction() as session:
            row = _owned_row(session, claim)
            if row is not None:
                row.status = status
                row.leased_until = None
                row.last_error = error


def _owned_row(session: Session, claim: Claim) -> OutboxItem | None:
    """The claimed row, if this worker still holds its lease (else another worker took it over)."""
    row = session.scalars(sa.select(OutboxItem).where(OutboxItem.id == claim.id).with_for_update()).first()
    if row is None:
        return None  # gone with its shop (an erased shop takes its jobs with it)
    if row.status != OutboxStatus.RUNNING or row.leased_until != claim.leased_until:
        log.warning("outbox row %s was taken over after its lease ran out; its outcome is dropped", claim.id)
        return None
    return row


def _fail_contact(session: Session, contact_id: int | None, detail: str) -> None:
    if contact_id is None:
        return
    contact = session.get(Contact, contact_id)
    if contact is not None:
        contact.sync_status = SyncStatus.FAILED
        contact.sync_detail = detail


def _current(contact: Contact, name: str) -> Any:
    return getattr(contact, name)


def _snapshot(contact: Contact) -> ContactSnapshot:
    consent_times = [t for t in (contact.email_consent_at, contact.sms_consent_at) if t is not None]
    return ContactSnapshot(
        email=contact.email,
        phone=contact.phone,
        platform_customer_id=contact.platform_customer_id,
        values={name: getattr(contact, name) for name in contact.pending_fields if name in PLATFORM_FIELDS},
        tags=tuple(contact.pending_tags or ()),
        consent_updated_at=max(consent_times) if consent_times else None,
        consent_source=contact.email_consent_source or contact.sms_consent_source,
        all_values={
            name: getattr(contact, name)
            for name in PLATFORM_FIELDS
            if getattr(contact, name) not in (None, Consent.NOT_SUBSCRIBED)
        },
        all_tags=tuple(contact.tags or ()),
    )


def _return_to_pending(session: Session, row: OutboxItem, *, due_at: datetime) -> None:
    """Back to pending; when a newer push for the contact is already waiting, that one carries on."""
    if row.kind == OutboxKind.PUSH_CONTACT and row.contact_id is not None:
        # Locked as a sync locks it: no push can be queued for the contact between the look and the write.
        session.execute(sa.select(Contact.id).where(Contact.id == row.contact_id).with_for_update())
        waiting = session.scalars(
            sa.select(OutboxItem).where(
                OutboxItem.contact_id == row.contact_id,
                OutboxItem.kind == OutboxKind.PUSH_CONTACT,
                OutboxItem.status == OutboxStatus.PENDING,
                OutboxItem.id != row.id,
            )
        ).first()
        if waiting is not None:
            waiting.due_at = max(waiting.due_at, due_at)
            waiting.attempts = row.attempts
            waiting.first_failed_at = row.first_failed_at
            row.status = OutboxStatus.DONE
            row.leased_until = None
            row.last_error = "superseded by a newer push of the same contact"
            return
    row.status = OutboxStatus.PENDING
    row.leased_until = None
    row.due_at = due_at


def requeue_failed(
    db: Database, shop_id: int, contact_ids: list[int] | None = None, now: datetime | None = None
) -> int:
    """Queue failed platform writes again: the listed contacts (failed or in conflict), or every failed
    contact and given-up job of the shop. What was not written is still pending on each contact, so the
    push carries exactly that. Returns how many contacts and jobs were queued."""
    now = now or utcnow()
    retriable = [SyncStatus.FAILED] if contact_ids is None else [SyncStatus.FAILED, SyncStatus.CONFLICT]
    with db.write_transaction() as session:
        statement = sa.select(Contact).where(Contact.shop_id == shop_id, Contact.sync_status.in_(retriable))
        if contact_ids is not None:
            statement = statement.where(Contact.id.in_(contact_ids))
        contacts = session.scalars(statement.with_for_update()).all()
        queued = []
        for contact in contacts:
            if contact.sync_status == SyncStatus.CONFLICT and not (
                contact.pending_fields or contact.pending_tags
            ):
                # Written without an identifier another customer held: try the identifiers again.
                contact.pending_fields = [name for name in ("email", "phone") if getattr(contact, name)]
            contact.sync_status = SyncStatus.PENDING
            contact.sync_detail = None
            queued.append(contact.id)
        session.execute(
            sa.update(OutboxItem)
            .where(
                OutboxItem.shop_id == shop_id,
                OutboxItem.contact_id.in_(queued),
                OutboxItem.kind == OutboxKind.PUSH_CONTACT,
                OutboxItem.status == OutboxStatus.DEAD,
            )
            .values(status=OutboxStatus.DONE, last_error="queued again")
        )
        jobs = 0
        if contact_ids is None:
            # A logged-in shopper's submission (rule 1) whose job was given up goes out again too.
            result = session.execute(
                sa.update(OutboxItem)
                .where(
                    OutboxItem.shop_id == shop_id,
                    OutboxItem.kind == OutboxKind.IDENTIFY_CUSTOMER,
                    OutboxItem.status == OutboxStatus.DEAD,
                )
                .values(status=OutboxStatus.PENDING, due_at=now, attempts=0, first_failed_at=None)
            )
            jobs = result.rowcount or 0
        if queued:
            session.flush()
            enqueue_pushes(session, shop_id, queued, now)
        return len(queued) + jobs
