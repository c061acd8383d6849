"""An unsubscribe link: the recipient's email or phone is unsubscribed on every contact holding it (rule 8)
and on the platform customer (rule 9), in one transaction.

It is ``MirrorService.unsubscribe_identifier`` plus the platform write: that one applies what the platform
said and so never writes back, while this one must reach the platform customer. The consent change, the
events and the queued push commit together (a transactional outbox), so an answered unsubscribe always
reaches the platform, however late.
"""

from __future__ import annotations

from datetime import datetime

from app.contacts import rules
from app.contacts.service import ContactService
from app.contacts.service import enqueue_pushes
from app.contacts.service import unsubscribe_holders
from app.db import identifier_lock_key
from app.db import lock_identifiers
from app.enums import Source
from app.enums import SyncStatus
from app.models import Shop
from app.tracking.tokens import TrackingLink


def unsubscribe(contacts: ContactService, link: TrackingLink, now: datetime) -> int:
    """Unsubscribe the link's identifier for its channel; returns how many contacts changed."""
    value = link.identifier
    if not value:
        return 0
    identifier = rules.CHANNEL_IDENTIFIER[link.channel]
    consent_field = rules.CONSENT_FIELDS[link.channel]
    with contacts.db.write_transaction() as session:
        lock_identifiers(session, [identifier_lock_key(link.shop_id, identifier, value)])
        holders = unsubscribe_holders(
            session,
            link.shop_id,
            link.channel,
            value,
            source=Source.UNSUBSCRIBE_LINK,
            now=now,
            event={"message_id": link.message_id},
        )
        if not holders:
            return 0
        shop = session.get(Shop, link.shop_id)
        write_platform = shop is not None and shop.installed
        pushes: list[int] = []
        for contact in holders:
            # A contact kept in popsync on purpose (an import without the platform) stays local, as the
            # sync service treats it when another record unsubscribes its identifier.
            if write_platform and contact.sync_status != SyncStatus.LOCAL:
                contact.pending_fields = sorted({*(contact.pending_fields or []), consent_field})
                contact.sync_status = SyncStatus.PENDING
                pushes.append(contact.id)
        session.flush()
        enqueue_pushes(session, link.shop_id, pushes, now)
        return len(holders)
