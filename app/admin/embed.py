"""Is the popup on the storefront? ``GET /api/v1/storefront-embed`` tells the merchant whether popsync's
app embed is switched on in the live theme, with the link that switches it on.

App embeds are off until the merchant turns them on in the theme editor; a popup that never shows is the
first thing a new merchant runs into. Shopify records the switch in the live theme's
``config/settings_data.json`` (read with the ``read_themes`` scope); SHOPLINE has no API that tells, so
there the answer is ``null`` with the theme editor's address.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from flask import g
from flask import jsonify

from app.admin.api import bp
from app.auth.admin import require_shop
from app.config import current_settings
from app.db import get_database
from app.enums import Platform
from app.models import Shop
from app.platforms import client_for
from app.platforms.base import PlatformError
from app.platforms.base import RetryLater
from app.platforms.budget import RateBudget
from app.platforms.tokens import refresh_if_due

log = logging.getLogger("popsync.admin")

# The block's file name in extensions/popsync-embed/blocks/ (Shopify's activateAppId names it).
EMBED_BLOCK = "popsync-embed"


def activate_url(shop: Shop) -> str:
    """Where the merchant switches the embed on: Shopify's theme editor deep link with ``activateAppId``
    (reference/shopify.md §4.2); SHOPLINE's theme list (Customize → App embeds)."""
    if shop.platform == Platform.SHOPIFY:
        api_key = current_settings().shopify_api_key
        return (
            f"https://{shop.domain}/admin/themes/current/editor"
            f"?context=apps&template=index&activateAppId={api_key}/{EMBED_BLOCK}"
        )
    return f"https://{shop.domain}/admin/themes"


def _shopify_embed_enabled(shop: Shop) -> tuple[bool | None, str]:
    settings = current_settings()
    keyring = current_app.extensions["popsync.keyring"]
    db = get_database()
    try:
        if refresh_if_due(db, keyring, settings, shop.id):
            with db.sessionmaker() as session:
                shop = session.get(Shop, shop.id) or shop
        client = client_for(shop, settings=settings, keyring=keyring, budget=RateBudget(db))
        enabled = client.app_embed_enabled(EMBED_BLOCK)  # type: ignore[attr-defined]
    except RetryLater:
        return None, "Shopify could not be asked just now; try again in a minute."
    except PlatformError as error:
        if "ACCESS_DENIED" in str(error):
            return None, "popsync needs the read_themes permission to see the theme; approve it in Shopify."
        log.info("embed status of shop %s unknown: %s", shop.id, error)
        return None, f"Shopify did not say: {error}"
    if enabled is None:
        return None, "The store has no live theme whose settings popsync can read."
    if enabled:
        return True, "The popup embed is on in the live theme."
    return False, "The popup embed is off in the live theme: switch it on with the link."


@bp.get("/storefront-embed")
@require_shop
def storefront_embed() -> Any:
    """``{"platform", "enabled": true|false|null, "activate_url", "detail"}``; ``null`` when it cannot be
    known (SHOPLINE, a missing permission, the platform unreachable)."""
    shop: Shop = g.shop
    if shop.platform == Platform.SHOPIFY:
        enabled, detail = _shopify_embed_enabled(shop)
    else:
        enabled, detail = (
            None,
            "SHOPLINE does not tell apps whether an embed is on: in the theme editor, open App embeds "
            "and switch popsync on.",
        )
    return jsonify(
        {"platform": shop.platform, "enabled": enabled, "activate_url": activate_url(shop), "detail": detail}
    )
