"""Who is calling the merchant admin API: a shop's API key (``psk_…``), on Shopify a session token, or the
admin pages' signed session cookie (SHOPLINE and ``popsync demo``, app.auth.admin_session).

Every admin route runs behind ``require_shop``; the authenticated shop is ``g.shop`` and every query is
scoped to it.

The cookie is sent by the browser on its own, so a request it authenticates could be forged by another
site. SameSite=Lax already keeps it off cross-site POSTs, PATCHes and DELETEs; on top of that an unsafe
method must carry ``X-Popsync-CSRF`` with the session's CSRF token: an HMAC of the cookie's value under
``SECRET_KEY``, handed to the pages in a meta tag. Another origin can neither read that token nor send a
custom header without a CORS preflight popsync never grants. Bearer credentials need no such token: no
browser attaches them by itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

import jwt
from flask import g
from flask import jsonify
from flask import request

from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import session_shop
from app.auth.session_tokens import SessionTokenError
from app.auth.session_tokens import verify_session_token
from app.config import current_settings
from app.db import request_session
from app.models import Shop
from app.shops import API_KEY_PREFIX
from app.shops import find_shop
from app.shops import shop_for_api_key

# App Bridge fetches a fresh session token and retries once when a 401 carries this header.
RETRY_SESSION_HEADER = "X-Shopify-Retry-Invalid-Session-Request"
# The header an admin page's unsafe fetch carries with the session's CSRF token.
CSRF_HEADER = "X-Popsync-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _unauthorized(message: str, *, retry_session: bool = False) -> Any:
    response = jsonify({"ok": False, "error": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="popsync"'
    if retry_session:
        response.headers[RETRY_SESSION_HEADER] = "1"
    return response


def _forbidden(message: str) -> Any:
    response = jsonify({"ok": False, "error": message})
    response.status_code = 403
    return response


def csrf_token(cookie_value: str) -> str:
    """The CSRF token bound to one admin session cookie (a new session, a new token)."""
    key = current_settings().secret_key.encode()
    return hmac.new(key, b"popsync-csrf\x00" + cookie_value.encode(), hashlib.sha256).hexdigest()


def request_csrf_token() -> str:
    """The CSRF token of the session cookie the current request carries ("" without one)."""
    value = request.cookies.get(COOKIE_NAME, "")
    return csrf_token(value) if value else ""


def csrf_ok() -> bool:
    """Whether an unsafe request authenticated by the session cookie carries its CSRF token."""
    if request.method in SAFE_METHODS:
        return True
    expected = request_csrf_token()
    given = request.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def shop_for_session_token(token: str) -> Shop:
    """The installed shop a Shopify session token names; SessionTokenError when the token is invalid or
    its shop is not installed."""
    settings = current_settings()
    secrets = (settings.shopify_api_secret, settings.shopify_api_secret_previous)
    domain = verify_session_token(token, api_key=settings.shopify_api_key, secrets=secrets)
    shop = find_shop(request_session(), domain)
    if shop is None or not shop.installed:
        raise SessionTokenError("popsync is not installed on this shop")
    return shop


def require_shop(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer 401 unless the request carries valid credentials of an installed shop: an admin API key
    (``psk_…``), a Shopify session token (any other Bearer value; a bad one is answered with the header
    that makes App Bridge retry with a fresh token) or, without an Authorization header, the admin
    session cookie (an unsafe method without the session's CSRF token: 403)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        if not header and COOKIE_NAME in request.cookies:
            cookie_shop = session_shop()
            if cookie_shop is None:
                return _unauthorized("the admin session has expired: open popsync from the store admin again")
            if not csrf_ok():
                return _forbidden(f"the {CSRF_HEADER} header is missing or wrong")
            g.shop = cookie_shop
            g.actor = "admin session"  # issue 7 (audit log): the signed session names no user
            return view(*args, **kwargs)
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return _unauthorized("an Authorization: Bearer header is required")
        credential = credential.strip()
        if not credential.startswith(API_KEY_PREFIX):
            # Not an API key, so a Shopify session token from the embedded admin.
            try:
                g.shop = shop_for_session_token(credential)
            except SessionTokenError as error:
                return _unauthorized(str(error), retry_session=True)
            g.actor = _session_token_actor(credential)  # issue 7 (audit log)
            return view(*args, **kwargs)
        shop = shop_for_api_key(request_session(), credential)
        if shop is None or not shop.installed:
            return _unauthorized("invalid credentials")
        g.shop = shop
        g.actor = f"api key {credential[:10]}"  # issue 7 (audit log): the stored prefix, never the key
        return view(*args, **kwargs)

    return wrapped


# --- issue 7: who acted, for the audit log (g.actor) ---------------------------------------------------


def _session_token_actor(token: str) -> str:
    """The staff member a session token names (its ``sub``, a Shopify user id), never the token. The
    token was verified just before this, so reading its claims again without the check is safe."""
    sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    return f"shopify user {sub}" if sub else "shopify session"
