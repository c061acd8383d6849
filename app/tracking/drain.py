"""The worker's side of tracking: hits become syncs by the rules, in batches, once per message and recipient.

Each round takes up to ``BATCH`` unprocessed hits (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
workers share the queue) and, in ONE transaction with the syncs themselves:

1. drops the hits of shops that are gone or uninstalled and of identifiers on the erasure list (rule 11:
   they record nothing);
2. claims "the first hit of this message for this recipient" by inserting into ``tracking_syncs``, whose
   unique key (shop, kind, message, keyed hash of the recipient) makes the claim exact across workers;
3. syncs the first hits by rules 2-4 with ``ContactService`` — the same code path as a submission, with the
   link's names as link names (rule 6: they fill empty names only), no consent (rule 8: opens and clicks
   never change it), and the platform write queued (rule 9);
4. marks every hit processed, links it to its contact, and clears its token (no sealed identifier is kept
   longer than needed).

Later opens of the same message stay recorded as hits (every open counts) without syncing again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import upsert
from app.enums import Source
from app.models import Shop
from app.models import Suppression
from app.models import TrackingHit
from app.models import TrackingSync
from app.models import listed_for_erasure
from app.tracking.hits import CLICK
from app.tracking.hits import suppression_digests
from app.tracking.tokens import InvalidTokenError
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import open_token

log = logging.getLogger("popsync.tracking")

BATCH = 500
RECIPIENT_PURPOSE = "tracking-recipient"


@dataclass
class _Hit:
    row: TrackingHit
    link: TrackingLink
    key: tuple[str, str, str]  # kind, message id, recipient key


class HitDrain:
    def __init__(self, contacts: ContactService, batch: int = BATCH) -> None:
        self.contacts = contacts
        self.batch = batch

    def run_once(self) -> int:
        """Process one batch; returns how many hits it took off the queue (0: nothing was waiting)."""
        try:
            return self._batch(limit=self.batch)
        except Exception:
            # A bug or a bad row must not stall the queue: take the hits one at a time, so one bad hit is
            # set aside (logged by id, never by recipient) and the others go through.
            log.exception("tracking batch failed; retrying its hits one by one")
            return self._one_by_one()

    def _one_by_one(self) -> int:
        db = self.contacts.db
        with db.sessionmaker() as session:
            ids = list(
                session.scalars(
                    sa.select(TrackingHit.id)
                    .where(TrackingHit.processed_at.is_(None))
                    .order_by(TrackingHit.id)
                    .limit(self.batch)
                )
            )
        for hit_id in ids:
            try:
                self._batch(limit=1, only_id=hit_id)
            except Exception:
                log.exception("tracking hit %s could not be synced; set aside", hit_id)
                with db.write_transaction() as session:
                    session.execute(
                        sa.update(TrackingHit)
                        .where(TrackingHit.id == hit_id)
                        .values(processed_at=self.contacts.clock(), token=None)
                    )
        return len(ids)

    def _batch(self, *, limit: int, only_id: int | None = None) -> int:
        keyring = self.contacts.keyring
        with self.contacts.db.write_transaction() as session:
            statement = sa.select(TrackingHit).where(TrackingHit.processed_at.is_(None))
            if only_id is not None:
                statement = statement.where(TrackingHit.id == only_id)
            rows = session.scalars(
                statement.order_by(TrackingHit.id).limit(limit).with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            now = self.contacts.clock()
            by_shop: dict[int, list[_Hit]] = defaultdict(list)
            doomed: list[int] = []
            for row in rows:
                try:
                    link = open_token(keyring, row.token or "")
                except InvalidTokenError:
                    # Sealed under a key since retired from SECRET_KEY_FALLBACKS: nothing to sync.
                    row.processed_at, row.token = now, None
                    continue
                recipient = keyring.digest(
                    RECIPIENT_PURPOSE, f"{link.channel}\x00{link.email or ''}\x00{link.phone or ''}"
                )
                by_shop[row.shop_id].append(_Hit(row, link, (row.kind, link.message_id, recipient)))
            for shop_id, hits in by_shop.items():
                doomed += self._shop_hits(session, shop_id, hits, now)
            if doomed:
                session.execute(sa.delete(TrackingHit).where(TrackingHit.id.in_(doomed)))
            return len(rows)

    def _shop_hits(self, session: Session, shop_id: int, hits: list[_Hit], now: Any) -> list[int]:
        """Sync one shop's hits; returns the ids of hits to delete (they record nothing)."""
        shop = session.get(Shop, shop_id)
        if shop is None or not shop.installed:
            return [hit.row.id for hit in hits]
        suppressed = _suppressed(session, shop_id, self.contacts.keyring, hits)
        doomed = [hit.row.id for hit in hits if hit.row.id in suppressed]
        hits = [hit for hit in hits if hit.row.id not in suppressed]
        if not hits:
            return doomed
        firsts = _claim_firsts(session, shop_id, hits, now)
        contact_of: dict[tuple[str, str, str], int | None] = {}
        for kind in sorted({hit.key[0] for hit in firsts}):
            group = [hit for hit in firsts if hit.key[0] == kind]
            # In this transaction, not sync_batch's own: the claim above and the sync commit together, so
            # a crash between them can neither lose the sync nor let it happen twice.
            results = self.contacts.sync_in_transaction(
                session,
                shop_id,
                [_collected(hit.link) for hit in group],
                source=Source.CLICK if kind == CLICK else Source.OPEN,
                evidence=[_evidence(hit) for hit in group],
                write_platform=True,  # rule 9: an open or a click writes the platform customer
                lift_suppression=False,  # rule 11: a tracking link never lifts an erasure
            )
            for hit, result in zip(group, results, strict=True):
                contact_of[hit.key] = result.contact_id
        if contact_of:
            for key, contact_id in contact_of.items():
                if contact_id is not None:
                    session.execute(
                        sa.update(TrackingSync)
                        .where(
                            TrackingSync.shop_id == shop_id,
                            TrackingSync.kind == key[0],
                            TrackingSync.message_id == key[1],
                            TrackingSync.recipient_key == key[2],
                        )
                        .values(contact_id=contact_id)
                    )
        missing = {hit.key for hit in hits} - contact_of.keys()
        if missing:
            contact_of.update(_known_contacts(session, shop_id, missing))
        for hit in hits:
            hit.row.processed_at = now
            hit.row.token = None
            hit.row.contact_id = contact_of.get(hit.key)
        return doomed


def _collected(link: TrackingLink) -> Collected:
    # Only identifiers and the sender's names: no consent, no tags (rules 6 and 8).
    return Collected(
        email=link.email, phone=link.phone, link_first_name=link.first_name, link_last_name=link.last_name
    )


def _evidence(hit: _Hit) -> dict[str, Any]:
    return {
        "message_id": hit.link.message_id,
        "channel": hit.link.channel,
        "agent": hit.row.agent,
        "machine": hit.row.machine,
    }


def _suppressed(session: Session, shop_id: int, keyring: Any, hits: Sequence[_Hit]) -> set[int]:
    """The hits (by id) whose email or phone is on the shop's erasure list."""
    digests_of = {hit.row.id: suppression_digests(keyring, hit.link) for hit in hits}
    every = {d for digests in digests_of.values() for d in digests}
    if not every:
        return set()
    listed = set(session.scalars(sa.select(Suppression.digest).where(listed_for_erasure(shop_id, every))))
    return {hit_id for hit_id, digests in digests_of.items() if listed & set(digests)}


def _claim_firsts(session: Session, shop_id: int, hits: list[_Hit], now: Any) -> list[_Hit]:
    """The hits that are the first of their (kind, message, recipient): those whose key this transaction
    inserted. A key another transaction holds uncommitted makes this one wait, then skip it: exact."""
    first_of: dict[tuple[str, str, str], _Hit] = {}
    for hit in hits:
        first_of.setdefault(hit.key, hit)
    # Sorted: two workers inserting overlapping keys take them in the same order, never in a cycle.
    keys = sorted(first_of)
    rows = [
        {"shop_id": shop_id, "kind": k, "message_id": m, "recipient_key": r, "synced_at": now}
        for k, m, r in keys
    ]
    statement = (
        upsert(session, TrackingSync)
        .on_conflict_do_nothing(index_elements=["shop_id", "kind", "message_id", "recipient_key"])
        .returning(TrackingSync.kind, TrackingSync.message_id, TrackingSync.recipient_key)
    )
    claimed = {(row.kind, row.message_id, row.recipient_key) for row in session.execute(statement, rows)}
    return [first_of[key] for key in keys if key in claimed]


def _known_contacts(
    session: Session, shop_id: int, keys: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], int | None]:
    recipients = {key[2] for key in keys}
    rows = session.execute(
        sa.select(
            TrackingSync.kind, TrackingSync.message_id, TrackingSync.recipient_key, TrackingSync.contact_id
        ).where(TrackingSync.shop_id == shop_id, TrackingSync.recipient_key.in_(recipients))
    )
    return {
        (row.kind, row.message_id, row.recipient_key): row.contact_id
        for row in rows
        if (row.kind, row.message_id, row.recipient_key) in keys
    }
