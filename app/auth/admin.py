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

from app.db import request_session
from app.shops import API_KEY_PREFIX
from app.shops import shop_for_api_key


def _unauthorized(message: str) -> Any:
    response = jsonify({"ok": False, "error": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="popsync"'
    return response


def require_shop(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer 401 unless the request carries valid credentials of an installed shop."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return _unauthorized("an Authorization: Bearer header is required")
        credential = credential.strip()
        if not credential.startswith(API_KEY_PREFIX):
            return _unauthorized("invalid credentials")
        shop = shop_for_api_key(request_session(), credential)
        if shop is None or not shop.installed:
            return _unauthorized("invalid credentials")
        g.shop = shop
        return view(*args, **kwargs)

    return wrapped
