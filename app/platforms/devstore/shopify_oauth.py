"""The development store's Shopify token endpoint: ``POST /admin/oauth/access_token``.

Three grants, answered with Shopify's shapes:

- authorization code (any non-empty ``code``: there is no grant page in development), with ``expiring=1``
  for an expiring offline token;
- token exchange (``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``): the ``subject_token`` is
  a session token, verified with the app's secret the store knows (the one it signs webhooks with);
- refresh (``grant_type=refresh_token``): single-use. The new access token replaces the old one at once
  (the store keeps one token per shop). As Shopify does, the spent refresh token is honoured for a short
  window after use, answering the same new pair again, so a client whose answer was lost can retry; after
  that, or once the new refresh token was used, it is refused.

The shop is ``X-Forwarded-Host`` (popsync's clients send it when their origin is rewritten) or ``Host``.
The client secret must be the store's Shopify secret; the client id is whatever the app sends.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request

from app.auth.session_tokens import SessionTokenError
from app.auth.session_tokens import verify_session_token
from app.enums import Platform
from app.platforms.devstore.state import METADATA
from app.platforms.devstore.state import DevStore
from app.platforms.devstore.state import shops
from app.shops import ShopError
from app.shops import normalize_shop_domain

bp = Blueprint("devstore_shopify_oauth", __name__)

ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 7776000  # 90 days
# How long a spent refresh token still answers with its replacement (Shopify's "short retry window").
REFRESH_RETRY_WINDOW = 60.0
GRANTED_SCOPES = "read_customers,write_customers,write_app_proxy,read_themes"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN, not a secret)
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 (a URN, not a secret)
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105 (a URN)

refresh_tokens = sa.Table(
    "devstore_shopify_refresh_tokens",
    METADATA,
    sa.Column("shop_id", sa.Integer, primary_key=True),
    sa.Column("refresh_token", sa.String(255), nullable=False, unique=True),
    sa.Column("expires_at", sa.Float, nullable=False),  # on the store's clock
    # The refresh token this one replaced, honoured until ``retry_until`` or until this one is used.
    sa.Column("previous_token", sa.String(255), unique=True),
    sa.Column("retry_until", sa.Float),
)


def _error(status: int, code: str, description: str) -> Any:
    return jsonify({"error": code, "error_description": description}), status


@bp.post("/admin/oauth/access_token")
def access_token() -> Any:
    """A token grant: ``{"access_token", "scope"}`` plus, for an expiring offline token, ``"expires_in"``,
    ``"refresh_token"`` and ``"refresh_token_expires_in"``; 400/401 with Shopify's ``error`` codes."""
    store: DevStore = current_app.extensions["devstore"]
    fields = _fields()
    try:
        _, domain = normalize_shop_domain(
            request.headers.get("X-Forwarded-Host") or request.host.split(":", 1)[0], Platform.SHOPIFY
        )
    except ShopError:
        return _error(400, "invalid_request", "not a shop of this store")
    secret = store.webhooks.secrets.get("shopify", "")
    client_secret = fields.get("client_secret", "")
    if (
        not fields.get("client_id")
        or not secret
        or not hmac.compare_digest(client_secret.encode(), secret.encode())
    ):
        return _error(401, "invalid_client", "Client credentials are invalid")
    grant_type = fields.get("grant_type", "")
    if grant_type == "refresh_token":
        return _refresh(store, domain, fields.get("refresh_token", ""))
    expiring = fields.get("expiring") == "1"
    if grant_type == TOKEN_EXCHANGE:
        if fields.get("subject_token_type") != ID_TOKEN_TYPE:
            return _error(400, "invalid_request", "subject_token_type must be an id_token")
        if fields.get("requested_token_type", OFFLINE_TOKEN_TYPE) != OFFLINE_TOKEN_TYPE:
            return _error(400, "invalid_request", "the development store grants offline tokens only")
        try:
            token_shop = verify_session_token(
                fields.get("subject_token", ""), api_key=fields["client_id"], secrets=[secret]
            )
        except SessionTokenError:
            return _error(400, "invalid_subject_token", "The subject token is invalid")
        if token_shop != domain:
            return _error(400, "invalid_subject_token", "The subject token is for another shop")
        return _mint(store, domain, expiring=expiring)
    if grant_type:
        return _error(400, "unsupported_grant_type", "unsupported grant_type")
    if not fields.get("code"):
        return _error(400, "invalid_request", "code is required")
    return _mint(store, domain, expiring=expiring)


def _fields() -> dict[str, str]:
    """The request's parameters, JSON (shopifyapp) or form-encoded (popsync's own requests)."""
    body = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(body, dict):
        return {}
    return {str(key): str(value) for key, value in body.items() if value is not None}


def _mint(store: DevStore, domain: str, *, expiring: bool) -> Any:
    token = "shpat_" + secrets.token_hex(16)
    answer: dict[str, Any] = {"access_token": token, "scope": GRANTED_SCOPES}
    # Under the store's lock for every database access: an in-memory store shares one connection.
    with store.lock:
        store.add_shop("shopify", domain, token)
        with store.engine.begin() as connection:
            _ensure_table(connection)
            shop_id = _shop_id(connection, domain)
            connection.execute(refresh_tokens.delete().where(refresh_tokens.c.shop_id == shop_id))
            if expiring:
                refresh = "shprt_" + secrets.token_hex(16)
                connection.execute(
                    refresh_tokens.insert().values(
                        shop_id=shop_id,
                        refresh_token=refresh,
                        expires_at=store.clock() + REFRESH_TOKEN_SECONDS,
                    )
                )
    if expiring:
        answer.update(
            expires_in=ACCESS_TOKEN_SECONDS,
            refresh_token=refresh,
            refresh_token_expires_in=REFRESH_TOKEN_SECONDS,
        )
    return jsonify(answer)


def _refresh(store: DevStore, domain: str, given: str) -> Any:
    if not given:
        return _error(400, "invalid_request", "refresh_token is required")
    now = store.clock()
    with store.lock:
        with store.engine.begin() as connection:
            _ensure_table(connection)
            shop_id = _shop_id(connection, domain)
            row = connection.execute(
                sa.select(refresh_tokens).where(refresh_tokens.c.shop_id == shop_id)
            ).first()
            if row is None:
                return _error(400, "invalid_grant", "The refresh token is invalid")
            if hmac.compare_digest(row.previous_token or "", given) and (row.retry_until or 0) >= now:
                # A retry after a lost answer: the same new pair again.
                access = connection.execute(
                    sa.select(shops.c.access_token).where(shops.c.id == shop_id)
                ).scalar()
                return jsonify(_refreshed(access, row.refresh_token, row.expires_at - now))
            if not hmac.compare_digest(row.refresh_token, given) or row.expires_at <= now:
                return _error(400, "invalid_grant", "The refresh token is invalid or expired")
            refresh = "shprt_" + secrets.token_hex(16)
            connection.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.shop_id == shop_id)
                .values(
                    refresh_token=refresh,
                    expires_at=now + REFRESH_TOKEN_SECONDS,
                    previous_token=given,
                    retry_until=now + REFRESH_RETRY_WINDOW,
                )
            )
        # The old access token stops working as the new one is stored.
        token = "shpat_" + secrets.token_hex(16)
        store.add_shop("shopify", domain, token)
    return jsonify(_refreshed(token, refresh, REFRESH_TOKEN_SECONDS))


def _refreshed(access: str, refresh: str, refresh_seconds: float) -> dict[str, Any]:
    return {
        "access_token": access,
        "scope": GRANTED_SCOPES,
        "expires_in": ACCESS_TOKEN_SECONDS,
        "refresh_token": refresh,
        "refresh_token_expires_in": int(refresh_seconds),
    }


def _ensure_table(connection: sa.Connection) -> None:
    # The store creates METADATA's tables when it starts, which may be before this module was imported.
    refresh_tokens.create(connection, checkfirst=True)


def _shop_id(connection: sa.Connection, domain: str) -> int | None:
    return connection.execute(
        sa.select(shops.c.id).where(shops.c.platform == "shopify", shops.c.domain == domain)
    ).scalar()
