"""The merchant's first-party session for the admin pages (SHOPLINE runs popsync non-embedded).

SHOPLINE has no session tokens, so after a signed open or install (app.auth.shopline) popsync sets its own
cookie ``popsync_session``: the shop's id and domain and the session's times, sealed with ``SECRET_KEY``
(app.crypto, AES-GCM: nothing in it can be read or changed, and ``SECRET_KEY_FALLBACKS`` still open it after
a key rotation). It is HttpOnly, SameSite=Lax (the merchant arrives by a top-level link from the store
admin; cross-site POSTs do not carry it), Secure when APP_URL is https, and lives 12 hours, after which the
merchant opens the app from the store admin again.

A session counts only while its shop is installed, and only for the installation it was issued in: after
an uninstall and reinstall, older sessions are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import current_app
from flask import request
from werkzeug.wrappers import Response

from app.config import current_settings
from app.crypto import InvalidSealError
from app.crypto import Keyring
from app.db import request_session
from app.db import utcnow
from app.models import Shop

COOKIE_NAME = "popsync_session"
PURPOSE = "admin-session"
LIFETIME = timedelta(hours=12)
_VERSION = 1
# A sealed session is about 200 characters; anything much longer is not ours.
_MAX_COOKIE_LENGTH = 1024
# Several app servers' clocks may differ a little: a session "issued" this far ahead still counts.
_CLOCK_SKEW_MS = 60_000


@dataclass(frozen=True)
class SessionClaims:
    shop_id: int
    domain: str
    issued_at_ms: int
    expires_at_ms: int


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _keyring() -> Keyring:
    return current_app.extensions["popsync.keyring"]


def _secure() -> bool:
    return current_settings().app_url.startswith("https://")


def seal_session(keyring: Keyring, shop: Shop, now: datetime) -> str:
    """The cookie value for a new session of ``shop`` issued at ``now``."""
    claims = {
        "v": _VERSION,
        "shop_id": shop.id,
        "domain": shop.domain,
        "iat": _ms(now),
        "exp": _ms(now + LIFETIME),
    }
    return keyring.seal(PURPOSE, json.dumps(claims, separators=(",", ":")).encode())


def open_session(keyring: Keyring, value: str, now: datetime) -> SessionClaims | None:
    """The claims of a genuine, unexpired session cookie; None for anything else."""
    if not value or len(value) > _MAX_COOKIE_LENGTH:
        return None
    try:
        claims = json.loads(keyring.open(PURPOSE, value))
    except (InvalidSealError, ValueError):
        return None
    if not isinstance(claims, dict) or claims.get("v") != _VERSION:
        return None
    shop_id, domain = claims.get("shop_id"), claims.get("domain")
    issued, expires = claims.get("iat"), claims.get("exp")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (shop_id, issued, expires)):
        return None
    if not isinstance(domain, str) or not domain:
        return None
    if not issued - _CLOCK_SKEW_MS <= _ms(now) < expires:
        return None
    return SessionClaims(shop_id=shop_id, domain=domain, issued_at_ms=issued, expires_at_ms=expires)


def start_session(response: Response, shop: Shop, *, now: datetime | None = None) -> None:
    """Set the admin session cookie for ``shop`` on ``response`` (replacing any other shop's session)."""
    value = seal_session(_keyring(), shop, now or utcnow())
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=int(LIFETIME.total_seconds()),
        path="/",
        secure=_secure(),
        httponly=True,
        samesite="Lax",
    )


def session_shop(*, now: datetime | None = None) -> Shop | None:
    """The shop whose valid admin session the current request carries, if it is still installed."""
    claims = open_session(_keyring(), request.cookies.get(COOKIE_NAME, ""), now or utcnow())
    if claims is None:
        return None
    shop = request_session().get(Shop, claims.shop_id)
    if shop is None or shop.domain != claims.domain or not shop.installed:
        return None
    # A session from before the shop's current installation belongs to a merchant who uninstalled.
    if _ms(shop.installed_at) > claims.issued_at_ms:
        return None
    return shop


def end_session(response: Response) -> None:
    """Remove the admin session cookie (sign-out, or a shop that is gone)."""
    response.delete_cookie(COOKIE_NAME, path="/", secure=_secure(), httponly=True, samesite="Lax")
