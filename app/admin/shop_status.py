"""The shop's own state for its merchant: ``GET /api/v1/shop``, and what the admin pages' banner says when
the platform refused popsync's access token.

A refused token that cannot be refreshed marks the shop ``needs_reauth`` (app/jobs.py): its platform
writes are kept (the contacts show ``failed``) and go out again, exactly once, as soon as a new token is
stored. The merchant must learn it and be told how to give the token back; scripts read the same here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import g
from flask import jsonify

from app.admin.api import bp
from app.auth.admin import require_shop
from app.config import Settings
from app.config import current_settings
from app.enums import Platform
from app.models import Shop
from app.shops import shop_json


def reauthorize_url(shop: Shop, settings: Settings) -> str | None:
    """Where the merchant goes to give popsync a token again: Shopify's grant page through the app's
    install route (a public app), or the SHOPLINE admin, where opening popsync authorises it again. None
    for a Shopify custom app (no API key): its token comes from ``popsync shops add``."""
    if shop.platform == Platform.SHOPIFY:
        if not settings.shopify_api_key:
            return None
        return f"{settings.app_url}/auth/shopify?{urlencode({'shop': shop.domain})}"
    return f"https://{shop.domain}/admin"


def reauthorize_hint(shop: Shop, settings: Settings) -> str:
    """What to do, in words (the banner's and the API's)."""
    if shop.platform == Platform.SHOPLINE:
        return "Open popsync from your SHOPLINE admin (Apps) to authorise it again."
    if settings.shopify_api_key:
        return "Open popsync from your Shopify admin, or authorise it again with the link."
    return (
        f"Store a new Admin API token: popsync shops add --platform shopify --domain {shop.domain} --token …"
    )


def shop_status(shop: Shop, settings: Settings) -> dict[str, Any]:
    status = shop_json(shop)
    status["reauthorize_url"] = reauthorize_url(shop, settings) if shop.needs_reauth else None
    status["detail"] = (
        "The store refused popsync's access: contacts are kept and their platform writes wait. "
        + reauthorize_hint(shop, settings)
        if shop.needs_reauth
        else "popsync can write to the store."
    )
    return status


@bp.app_template_global("reauthorization")
def reauthorization(shop: Shop) -> dict[str, str | None] | None:
    """For the admin pages' layout: the re-authorisation banner's link and words, or None when the shop's
    token works."""
    if not shop.needs_reauth:
        return None
    settings = current_settings()
    return {"url": reauthorize_url(shop, settings), "hint": reauthorize_hint(shop, settings)}


@bp.get("/shop")
@require_shop
def show_shop() -> Any:
    """The authenticated shop: platform, domain, whether its token works (``needs_reauth``) and, when it
    does not, ``reauthorize_url`` and what to do (``detail``). Never a token."""
    return jsonify(shop_status(g.shop, current_settings()))
