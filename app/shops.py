"""Shops: strict domain checks, registration with sealed tokens, and admin API keys.

A shop domain is checked before anything is looked up or requested with it: only
``name.myshopify.com`` (Shopify) or ``handle.myshopline.com`` (SHOPLINE), lower-case, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.crypto import Keyring
from app.db import utcnow
from app.enums import Platform
from app.models import ApiKey
from app.models import Shop
from app.models import ShopDomain

TOKEN_PURPOSE = "platform-token"  # noqa: S105 (a key-derivation label, not a secret)
API_KEY_PREFIX = "psk_"
_DOMAIN_PATTERNS = {
    Platform.SHOPIFY: re.compile(r"^[a-z0-9][a-z0-9-]{0,59}\.myshopify\.com$"),
    Platform.SHOPLINE: re.compile(r"^[a-z0-9][a-z0-9-]{0,59}\.myshopline\.com$"),
}


class ShopError(ValueError):
    """A shop value is unacceptable; the message says which and why."""


def normalize_shop_domain(domain: str, platform: Platform | str | None = None) -> tuple[Platform, str]:
    """The platform and the canonical domain; ShopError for anything that is not exactly a shop domain."""
    value = (domain or "").strip().lower()
    platforms = [Platform(platform)] if platform else list(Platform)
    for candidate in platforms:
        if _DOMAIN_PATTERNS[candidate].fullmatch(value):
            return candidate, value
    expected = " or ".join(
        {Platform.SHOPIFY: "name.myshopify.com", Platform.SHOPLINE: "handle.myshopline.com"}[p]
        for p in platforms
    )
    raise ShopError(f"domain must look like {expected}")


def find_shop(session: Session, domain: str) -> Shop | None:
    try:
        _, canonical = normalize_shop_domain(domain)
    except ShopError:
        return None
    return session.scalar(sa.select(Shop).where(Shop.domain == canonical))


def register_shop(
    session: Session,
    keyring: Keyring,
    *,
    platform: str,
    domain: str,
    token: str,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
    region: str | None = None,
) -> Shop:
    """Create the shop, or update its tokens (and region) if it exists; reinstalls it if it was removed."""
    platform_value, canonical = normalize_shop_domain(domain, platform)
    if not token or not token.strip():
        raise ShopError("token must not be empty")
    shop = session.scalar(sa.select(Shop).where(Shop.domain == canonical))
    if shop is None:
        shop = Shop(platform=platform_value, domain=canonical, installed_at=utcnow())
        session.add(shop)
        session.flush()
        session.add(ShopDomain(shop_id=shop.id, origin=f"https://{canonical}"))
    elif shop.platform != platform_value:
        raise ShopError(f"{canonical} is already registered as a {shop.platform} shop")
    store_tokens(shop, keyring, token.strip(), refresh_token, expires_at)
    if region is not None:
        shop.region = region
    if shop.uninstalled_at is not None:
        shop.uninstalled_at = None
        shop.installed_at = utcnow()
    shop.needs_reauth = False
    session.flush()
    return shop


def store_tokens(
    shop: Shop,
    keyring: Keyring,
    access_token: str,
    refresh_token: str | None,
    expires_at: datetime | None,
    refresh_expires_at: datetime | None = None,
) -> None:
    shop.access_token = keyring.seal_text(TOKEN_PURPOSE, access_token)
    shop.access_token_expires_at = expires_at
    shop.refresh_token = keyring.seal_text(TOKEN_PURPOSE, refresh_token) if refresh_token else None
    shop.refresh_token_expires_at = refresh_expires_at


def access_token(shop: Shop, keyring: Keyring) -> str | None:
    return keyring.open_text(TOKEN_PURPOSE, shop.access_token) if shop.access_token else None


def shop_json(shop: Shop) -> dict[str, Any]:
    """What may be shown of a shop: never its tokens."""
    return {
        "id": shop.id,
        "platform": shop.platform,
        "domain": shop.domain,
        "region": shop.region,
        "installed": shop.installed,
        "has_token": shop.access_token is not None,
        "token_expires_at": shop.access_token_expires_at.isoformat()
        if shop.access_token_expires_at
        else None,
        "needs_reauth": shop.needs_reauth,
        "installed_at": shop.installed_at.isoformat(),
        "uninstalled_at": shop.uninstalled_at.isoformat() if shop.uninstalled_at else None,
    }


def _hash_api_key(key: str) -> str:
    # The key is 256 random bits, so a plain SHA-256 is as good as a password hash and far cheaper.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, shop: Shop) -> str:
    """A new admin API key for ``shop``; the only time the key itself exists outside the caller."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(shop_id=shop.id, key_hash=_hash_api_key(key), prefix=key[:10]))
    session.flush()
    return key


def shop_for_api_key(session: Session, key: str) -> Shop | None:
    """The installed shop whose live key this is, or None."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 128:
        return None
    digest = _hash_api_key(key)
    row = session.execute(
        sa.select(ApiKey, Shop)
        .join(Shop, Shop.id == ApiKey.shop_id)
        .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.ApiKey.key_hash, digest):
        return None
    return row.Shop
