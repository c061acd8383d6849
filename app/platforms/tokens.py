"""Keeping a shop's platform access token fresh, one refresh at a time per shop.

SHOPLINE tokens live 10 hours and are refreshed with the app's signed request; the shop's row is locked
for the refresh (``SELECT … FOR UPDATE``; on SQLite the write transaction's lock) so two workers never
refresh at once, and the second one finds the token the first stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from datetime import timedelta

import requests
import sqlalchemy as sa

from app.config import Settings
from app.crypto import Keyring
from app.db import Database
from app.db import utcnow
from app.enums import Platform
from app.models import Shop
from app.shops import store_tokens

log = logging.getLogger("popsync.tokens")

# Refresh when less than this is left: a push never starts with a token about to expire under it.
REFRESH_MARGIN = timedelta(hours=1)


def refresh_if_due(
    db: Database,
    keyring: Keyring,
    settings: Settings,
    shop_id: int,
    *,
    refused_token: str | None = None,
    session: requests.Session | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> bool:
    """Refresh the shop's access token when it is close to expiry, or after the platform refused
    ``refused_token`` (the sealed token as stored).

    Returns True when the shop has a new token: stored now, or already stored by another worker that
    refreshed first (a refresh token is single-use and SHOPLINE refuses refreshes in quick succession, so
    the second worker must not refresh again). Raises the client's AuthFailed/RetryLater when the platform
    refuses or cannot answer the refresh.
    """
    with db.write_transaction() as locked:
        shop = locked.scalars(sa.select(Shop).where(Shop.id == shop_id).with_for_update()).first()
        if shop is None or shop.platform != Platform.SHOPLINE:
            return False
        if refused_token is not None and shop.access_token != refused_token:
            return True
        expires_at = shop.access_token_expires_at
        due = refused_token is not None or (expires_at is not None and expires_at - clock() < REFRESH_MARGIN)
        if not due:
            return False
        from app.platforms.shopline import refresh_access_token

        token, new_expiry = refresh_access_token(
            shop.domain,
            settings.shopline_app_key,
            settings.shopline_app_secret,
            admin_origin=settings.shopline_admin_origin,
            session=session,
            timeout=settings.platform_timeout,
        )
        store_tokens(shop, keyring, token, None, new_expiry)
        shop.needs_reauth = False
        log.info("refreshed the access token of shop %s (expires %s)", shop_id, new_expiry.isoformat())
        return True
