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


# Both platforms sign only the body: the topic, shop and delivery-id headers could be swapped on a captured
# body. Topics that destroy something must therefore find their shop in the signed body, and no body may
# name another shop than the header does. (A customer body names no shop, so it cannot be recognised when
# replayed for another shop; it can only ever be mirrored, never erase or uninstall anything.)
_SHOP_FIELDS = {"shopify": ("shop_domain", "myshopify_domain"), "shopline": ("shop_domain", "store_domain")}
_MUST_NAME_THE_SHOP = {
    "shopify": {"shop/redact", "customers/redact", "app/uninstalled"},
    "shopline": {"merchants/redact", "customers/redact", "apps/installed_uninstalled"},
}


def _named_shops(platform: str, topic: str, payload: dict[str, Any]) -> set[str]:
    """The shop domains the signed body names (lower-case), in the fields each platform uses."""
    named = {payload[key] for key in _SHOP_FIELDS.get(platform, ()) if isinstance(payload.get(key), str)}
    if platform == "shopify" and topic == "app/uninstalled" and isinstance(payload.get("domain"), str):
        named.add(payload["domain"])  # the shop object's primary domain: the myshopify one on a new shop
    if platform == "shopline" and isinstance(payload.get("handle"), str):
        named.add(f"{payload['handle']}.myshopline.com")
    return {name.strip().lower() for name in named}


def unsigned_headers_problem(platform: str, topic: str, domain: str, payload: dict[str, Any]) -> str | None:
    """Why the unsigned headers do not fit the signed body (another shop named, or a destructive topic
    whose body names no shop: a body replayed under another topic), or None."""
    named = _named_shops(platform, topic, payload)
    canonical = domain.strip().lower()
    if platform == "shopify" and topic == "app/uninstalled":
        # The primary domain may be a custom one: the body needs to name this shop once, not only.
        if canonical not in named:
            return "the webhook's body does not name the shop in its header"
        return None
    if named - {canonical}:
        return "the webhook's body names another shop than its header"
    if topic in _MUST_NAME_THE_SHOP.get(platform, set()) and not named:
        return f"a {topic} webhook's body must name its shop"
    return None


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
