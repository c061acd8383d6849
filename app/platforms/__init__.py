"""The platforms popsync writes to. ``client_for`` builds the right PlatformClient for a shop."""

from __future__ import annotations

from typing import Any

import requests

from app.config import Settings
from app.crypto import Keyring
from app.enums import Platform
from app.models import Shop
from app.platforms.base import AuthFailed
from app.platforms.base import PlatformClient
from app.platforms.budget import RateBudget
from app.shops import access_token


def client_for(
    shop: Shop,
    *,
    settings: Settings,
    keyring: Keyring,
    budget: RateBudget | None,
    session: requests.Session | None = None,
) -> PlatformClient:
    """The client for this shop's platform, with its token opened; AuthFailed when it has none."""
    token = access_token(shop, keyring)
    if not token:
        raise AuthFailed("the store has no access token: it needs to be installed again")
    if shop.platform == Platform.SHOPIFY:
        from app.platforms.shopify import ShopifyClient

        return ShopifyClient(
            domain=shop.domain,
            access_token=token,
            api_version=settings.shopify_api_version,
            admin_origin=settings.shopify_admin_origin,
            shop_id=shop.id,
            budget=budget,
            state=dict(shop.platform_state or {}),
            session=session,
            timeout=settings.platform_timeout,
        )
    from app.platforms.shopline import ShoplineClient

    return ShoplineClient(**shopline_options(shop, token, settings=settings, budget=budget, session=session))


def shopline_options(
    shop: Shop, token: str, *, settings: Settings, budget: RateBudget | None, session: requests.Session | None
) -> dict[str, Any]:
    """How to reach a SHOPLINE shop's Open API: the same for its customers and its webhook subscriptions."""
    return {
        "domain": shop.domain,
        "access_token": token,
        "api_version": settings.shopline_api_version,
        "admin_origin": settings.shopline_admin_origin,
        "shop_id": shop.id,
        "budget": budget,
        "session": session,
        "timeout": settings.platform_timeout,
        # SHOPLINE's leaky bucket: 4 requests/s and a burst of 40 by default (unlimited on Enterprise plans).
        "restore_rate": settings.shopline_requests_per_second,
        "bucket_capacity": max(40.0, settings.shopline_requests_per_second * 10),
    }
