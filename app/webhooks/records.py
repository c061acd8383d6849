"""Recording a verified webhook: once per delivery id, with the worker's job in the same transaction."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.db import upsert
from app.db import utcnow
from app.enums import OutboxKind
from app.models import OutboxItem
from app.models import Shop
from app.models import WebhookDelivery
from app.shops import ShopError
from app.shops import normalize_shop_domain
from app.webhooks.handlers import HANDLERS
from app.webhooks.handlers import is_uninstall

# Uninstall, erasure and webhook work goes ahead of bulk pushes (lower runs first).
WEBHOOK_PRIORITY = 10


def record_delivery(
    db: Database, platform: str, webhook_id: str, topic: str, domain: str, payload: dict[str, Any]
) -> str:
    """Record the delivery and queue its handling; "recorded", "duplicate" or "ignored: …"."""
    if topic not in HANDLERS.get(platform, {}):
        return "ignored: not a topic popsync handles"
    try:
        _, canonical = normalize_shop_domain(domain, platform)
    except ShopError:
        return "ignored: not a shop domain"
    if not webhook_id:
        # Every platform sends one; if one ever does not, the body itself identifies the delivery.
        webhook_id = "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    now = utcnow()
    with db.write_transaction() as session:
        shop = session.scalar(sa.select(Shop).where(Shop.domain == canonical).with_for_update())
        if shop is None:
            return "ignored: unknown shop"
        delivery_id = session.scalar(
            upsert(session, WebhookDelivery)
            .values(
                platform=platform,
                webhook_id=webhook_id[:128],
                topic=topic,
                shop_domain=canonical,
                shop_id=shop.id,
                payload=payload,
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["platform", "webhook_id"])
            .returning(WebhookDelivery.id)
        )
        if delivery_id is None:
            return "duplicate"
        if is_uninstall(platform, topic, payload):
            # The token is revoked at once: forget it in the request, keep the contacts until the redact.
            shop.access_token = None
            shop.refresh_token = None
            shop.access_token_expires_at = None
            shop.refresh_token_expires_at = None
            shop.uninstalled_at = now
        session.add(
            OutboxItem(
                shop_id=shop.id,
                kind=OutboxKind.WEBHOOK,
                priority=WEBHOOK_PRIORITY,
                payload={"delivery_id": delivery_id},
                due_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        return "recorded"
