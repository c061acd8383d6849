"""Keeping a shop's platform access token fresh, one refresh at a time per shop, and Shopify's token
endpoint (authorization code, refresh).

SHOPLINE tokens live 10 hours and are refreshed with the app's signed request. Shopify's expiring offline
tokens live an hour and are refreshed with their refresh token, which is single-use: each refresh returns a
new access token and a new refresh token. Either way the shop's row is locked for the refresh
(``SELECT … FOR UPDATE``; on SQLite the write transaction's lock) so two workers never refresh at once,
and the second one finds the token the first stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
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
from app.platforms.base import AuthFailed
from app.platforms.base import RetryLater
from app.platforms.http import admin_url
from app.platforms.http import new_session
from app.shops import TOKEN_PURPOSE
from app.shops import store_tokens

log = logging.getLogger("popsync.tokens")

# Refresh when less than this is left: a push never starts with a token about to expire under it.
REFRESH_MARGIN = timedelta(hours=1)
# Shopify's tokens live only an hour, so SHOPLINE's margin would refresh before every push.
SHOPIFY_REFRESH_MARGIN = timedelta(minutes=5)
SHOPIFY_TOKEN_PATH = "/admin/oauth/access_token"  # noqa: S105 (a path, not a secret)
ERROR_WAIT = 5.0
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True)
class ShopifyGrant:
    """What Shopify's token endpoint granted. Expiries are None for a non-expiring token."""

    access_token: str
    expires_at: datetime | None
    refresh_token: str | None
    refresh_expires_at: datetime | None
    scope: str | None

    def __repr__(self) -> str:
        # Never the tokens themselves, should a grant end up in a log or a traceback.
        return f"ShopifyGrant(expires_at={self.expires_at!r}, scope={self.scope!r})"


class AnswerLost(RetryLater):
    """The token request went out and no answer came back (timeout, connection lost)."""


def request_shopify_token(
    domain: str,
    fields: Mapping[str, str],
    settings: Settings,
    *,
    session: requests.Session | None = None,
    now: datetime | None = None,
) -> ShopifyGrant:
    """``POST /admin/oauth/access_token`` on the shop (``SHOPIFY_ADMIN_ORIGIN`` when set) with ``fields``
    and the app's credentials. Raises AnswerLost/RetryLater when Shopify cannot answer now, AuthFailed when
    it refuses (the message has Shopify's error code, never a token or the secret)."""
    url, forwarded = admin_url(domain, SHOPIFY_TOKEN_PATH, settings.shopify_admin_origin)
    body = {"client_id": settings.shopify_api_key, "client_secret": settings.shopify_api_secret, **fields}
    http = session or new_session()
    try:
        response = http.post(
            url,
            data=body,
            headers={"Accept": "application/json", **forwarded},
            timeout=settings.platform_timeout,
        )
    except (requests.Timeout, requests.ConnectionError) as error:
        raise AnswerLost(f"no answer from Shopify to the token request ({type(error).__name__})", 0) from None
    except requests.RequestException as error:
        raise RetryLater(
            f"could not reach Shopify for a token ({type(error).__name__})", ERROR_WAIT
        ) from None
    finally:
        if session is None:
            http.close()
    status = response.status_code
    if status == 429:
        raise RetryLater("Shopify throttled the token request", _retry_after(response), throttled=True)
    if status >= 500:
        raise RetryLater(f"Shopify answered {status} to the token request", _retry_after(response))
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    token = payload.get("access_token")
    if status == 200 and isinstance(token, str) and token:
        now = now or utcnow()
        refresh = payload.get("refresh_token")
        return ShopifyGrant(
            access_token=token,
            expires_at=_after(now, payload.get("expires_in")),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            refresh_expires_at=_after(now, payload.get("refresh_token_expires_in")),
            scope=payload.get("scope") if isinstance(payload.get("scope"), str) else None,
        )
    code = payload.get("error")
    code = code if isinstance(code, str) and _ERROR_CODE.match(code) else "no error code"
    raise AuthFailed(f"Shopify refused the token request ({status}, {code})")


def refresh_shopify_token(
    domain: str,
    refresh_token: str,
    settings: Settings,
    *,
    session: requests.Session | None = None,
    now: datetime | None = None,
) -> ShopifyGrant:
    """A new access token and refresh token for the shop, from its single-use ``refresh_token``.

    When the answer is lost the refresh may have happened at Shopify and the token we hold already be
    spent; Shopify honours an immediate retry with the same refresh token, so it is retried once, at once.
    """
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    try:
        return request_shopify_token(domain, fields, settings, session=session, now=now)
    except AnswerLost:
        log.info("the token refresh of %s got no answer; retrying once with the same refresh token", domain)
    try:
        return request_shopify_token(domain, fields, settings, session=session, now=now)
    except AnswerLost as lost:
        raise RetryLater(str(lost), ERROR_WAIT) from None


def _after(now: datetime, seconds: object) -> datetime | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return now + timedelta(seconds=seconds)


def _retry_after(response: requests.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ERROR_WAIT))
    except ValueError:
        return ERROR_WAIT
    return seconds if seconds > 0 else ERROR_WAIT


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
    refuses or cannot answer the refresh. A Shopify token without a refresh token (a custom app's, or one
    whose refresh token expired) is not refreshable: False, or AuthFailed when it was refused.
    """
    with db.write_transaction() as locked:
        shop = locked.scalars(sa.select(Shop).where(Shop.id == shop_id).with_for_update()).first()
        if shop is None or shop.platform not in (Platform.SHOPLINE, Platform.SHOPIFY):
            return False
        if refused_token is not None and shop.access_token != refused_token:
            return True
        now = clock()
        margin = SHOPIFY_REFRESH_MARGIN if shop.platform == Platform.SHOPIFY else REFRESH_MARGIN
        expires_at = shop.access_token_expires_at
        due = refused_token is not None or (expires_at is not None and expires_at - now < margin)
        if not due:
            return False
        if shop.platform == Platform.SHOPIFY:
            return _refresh_shopify(
                shop, keyring, settings, refused=refused_token is not None, session=session, now=now
            )
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


def _refresh_shopify(
    shop: Shop,
    keyring: Keyring,
    settings: Settings,
    *,
    refused: bool,
    session: requests.Session | None,
    now: datetime,
) -> bool:
    """Refresh a Shopify shop's token; the caller holds the shop's row lock until this commits."""
    refresh_expired = shop.refresh_token_expires_at is not None and shop.refresh_token_expires_at <= now
    if shop.refresh_token is None or refresh_expired:
        if refused:
            why = "its refresh token expired" if shop.refresh_token else "it has no refresh token"
            raise AuthFailed(f"Shopify refused the access token and {why}: the shop must open popsync again")
        return False
    refresh_token = keyring.open_text(TOKEN_PURPOSE, shop.refresh_token)
    grant = refresh_shopify_token(shop.domain, refresh_token, settings, session=session, now=now)
    # Shopify always sends a new refresh token with the new access token; keep the old one if it ever did not.
    new_refresh = grant.refresh_token or refresh_token
    refresh_expires_at = grant.refresh_expires_at if grant.refresh_token else shop.refresh_token_expires_at
    store_tokens(shop, keyring, grant.access_token, new_refresh, grant.expires_at, refresh_expires_at)
    if grant.scope:
        shop.scopes = grant.scope
    shop.needs_reauth = False
    log.info(
        "refreshed the Shopify access token of shop %s (expires %s)",
        shop.id,
        grant.expires_at.isoformat() if grant.expires_at else "never",
    )
    return True
