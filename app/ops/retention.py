"""Event retention: contact events older than ``EVENT_RETENTION_DAYS`` are deleted, once a day.

Every background worker prunes when it starts and then a day after its last pass finished. A pass walks
the shops one at a time and deletes each shop's old events in batches of ``BATCH`` rows, each batch its
own short transaction (no long lock on a big table; a submission adding an event waits at most for one
batch). Batches are found through the existing index ``(shop_id, kind, occurred_at)``, one range per
event kind, so no extra index taxes every insert. A worker spends at most ``STEP_SECONDS`` a round on it
and serves its queue between rounds, so a first pass over years of events does not stall platform writes.

Several workers may prune at once: each batch skips rows another worker has locked (PostgreSQL), and
deleting what is already gone deletes nothing. Only the events go: contacts, their consent and the
consent evidence on the contact itself stay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa

from app import metrics
from app.db import Database
from app.db import utcnow
from app.enums import EventKind
from app.models import ContactEvent
from app.models import Shop

log = logging.getLogger("popsync.retention")

BATCH = 1000
STEP_SECONDS = 0.5
PASS_INTERVAL = 24 * 3600.0  # seconds between the end of one pass and the start of the next
RETRY_AFTER_FAILURE = 3600.0


def delete_expired_batch(db: Database, shop_id: int, cutoff: datetime, limit: int = BATCH) -> int:
    """Delete up to ``limit`` of the shop's events older than ``cutoff`` in one short transaction."""
    expired = (
        sa.select(ContactEvent.id)
        .where(
            ContactEvent.shop_id == shop_id,
            # Every kind named, so each is one range of the (shop_id, kind, occurred_at) index.
            ContactEvent.kind.in_([kind.value for kind in EventKind]),
            ContactEvent.occurred_at < cutoff,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with db.write_transaction() as session:
        result = session.execute(
            sa.delete(ContactEvent).where(ContactEvent.id.in_(expired)),
            execution_options={"synchronize_session": False},
        )
        return result.rowcount or 0


def prune_events(db: Database, cutoff: datetime, *, batch: int = BATCH) -> int:
    """A whole pass at once (tests, one-off runs): every shop's events older than ``cutoff``."""
    pruner = EventPruner(db, retention_days=1, batch=batch, step_seconds=float("inf"))
    return pruner.run_pass(cutoff)


class EventPruner:
    """The worker's side: ``run_once`` each round does a bounded slice of the day's pass, when one is due."""

    def __init__(
        self,
        db: Database,
        retention_days: int,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch: int = BATCH,
        step_seconds: float = STEP_SECONDS,
        interval: float = PASS_INTERVAL,
    ) -> None:
        self.db = db
        self.retention_days = retention_days
        self.clock = clock
        self.batch = batch
        self.step_seconds = step_seconds
        self.interval = interval
        self._next_pass = 0.0  # time.monotonic() at which the next pass starts: at once for a new worker
        self._cutoff: datetime | None = None  # set while a pass is under way
        self._shop_after = 0  # the pass goes through the shops by id
        self._deleted = 0

    def run_once(self) -> int:
        """Delete for at most ``step_seconds`` if a pass is due or under way; how many events went.

        A failure (the database away, a bug) ends the pass and is retried an hour later: retention must
        never stop the worker's other jobs, which run in the same round."""
        if self.retention_days <= 0:
            return 0
        try:
            return self._slice()
        except Exception:
            log.exception("retention pass failed; trying again in an hour")
            self._cutoff = None
            self._next_pass = time.monotonic() + RETRY_AFTER_FAILURE
            return 0

    def _slice(self) -> int:
        if self._cutoff is None:
            if time.monotonic() < self._next_pass:
                return 0
            self._cutoff = self.clock() - timedelta(days=self.retention_days)
            self._shop_after = 0
            self._deleted = 0
        deadline = time.monotonic() + self.step_seconds
        deleted = 0
        while True:
            shop_id = self._current_shop()
            if shop_id is None:
                self._finish_pass()
                break
            removed = delete_expired_batch(self.db, shop_id, self._cutoff, self.batch)
            deleted += removed
            if removed < self.batch:
                self._shop_after = shop_id  # this shop is done: the next one
            if time.monotonic() >= deadline:
                break
        self._deleted += deleted
        metrics.record_events_pruned(deleted)
        return deleted

    def run_pass(self, cutoff: datetime) -> int:
        self._cutoff, self._shop_after, self._deleted = cutoff, 0, 0
        total = 0
        while self._cutoff is not None:
            total += self._slice()
        return total

    def _current_shop(self) -> int | None:
        with self.db.sessionmaker() as session:
            return session.scalar(sa.select(sa.func.min(Shop.id)).where(Shop.id > self._shop_after))

    def _finish_pass(self) -> None:
        if self._deleted and self._cutoff is not None:
            log.info(
                "retention: deleted %d contact events from before %s", self._deleted, self._cutoff.isoformat()
            )
        self._cutoff = None
        self._next_pass = time.monotonic() + self.interval
