"""Who is calling the merchant admin API: a shop's API key (``psk_…``) or, on Shopify, a session token.

Every admin route runs behind ``require_shop``; the authenticated shop is ``g.shop`` and every query is
scoped to it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g
from flask import jsonify
from flask import request

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


def _unauthorized(message: str, *, retry_session: bool = False) -> Any:
    response = jsonify({"ok": False, "error": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="popsync"'
    if retry_session:
        response.headers[RETRY_SESSION_HEADER] = "1"
    return response


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
    (``psk_…``) or a Shopify session token (any other Bearer value; a bad one is answered with the header
    that makes App Bridge retry with a fresh token)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
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
            return view(*args, **kwargs)
        shop = shop_for_api_key(request_session(), credential)
        if shop is None or not shop.installed:
            return _unauthorized("invalid credentials")
        g.shop = shop
        return view(*args, **kwargs)

    return wrapped
