"""Shopify install and the embedded app home.

Two ways a shop gets its expiring offline token:

- the embedded app home ``GET /`` (Shopify's managed installation): the App Bridge ID token arriving as the
  ``id_token`` query parameter is verified (``shopifyapp``'s ``verify_app_home_req``, then our stricter
  check of ``dest`` and ``iss``) and, when the shop has no usable token, exchanged for one (token exchange);
- the authorization-code grant ``GET /auth/shopify`` → Shopify's grant page → ``GET /auth/shopify/callback``
  (non-embedded and legacy installs), hand-rolled since ``shopifyapp`` has none.

Server-to-server calls honour ``SHOPIFY_ADMIN_ORIGIN``: token requests through ``admin_url`` and the
token exchange through an httpx transport that rewrites Shopify's origin. Redirects of the merchant's
browser always name the real shop. Secrets and tokens never appear in a URL, a log line or an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import redirect
from flask import render_template_string
from flask import request
from itsdangerous import BadSignature
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer
from shopify_app import ShopifyApp
from shopify_app import TokenExchangeAccessToken
from werkzeug.datastructures import MultiDict

from app.admin.pages import embedded_home
from app.auth.admin import RETRY_SESSION_HEADER
from app.auth.session_tokens import SessionTokenError
from app.auth.session_tokens import verify_session_token
from app.config import Settings
from app.config import current_settings
from app.db import get_database
from app.db import utcnow
from app.enums import Platform
from app.jobs import requeue_failed
from app.platforms.base import PlatformError
from app.platforms.tokens import ShopifyGrant
from app.platforms.tokens import request_shopify_token
from app.pulls import start_backfill
from app.shops import ShopError
from app.shops import find_shop
from app.shops import normalize_shop_domain
from app.shops import register_shop

bp = Blueprint("shopify_auth", __name__)
log = logging.getLogger("popsync.auth.shopify")

SCOPES = "read_customers,write_customers,write_app_proxy,read_themes"
CALLBACK_PATH = "/auth/shopify/callback"
PATCH_ID_TOKEN_PATH = "/auth/patch-id-token"  # noqa: S105 (a path, not a secret)
STATE_COOKIE = "popsync_shopify_state"
STATE_COOKIE_PATH = "/auth/shopify"  # covers the callback, nothing else
STATE_MAX_AGE = 600  # seconds between the redirect to the grant page and the callback
STATE_SALT = "popsync.shopify.oauth-state"
# Shopify's own library refuses an hmac-signed query whose timestamp is further than this from now.
HMAC_MAX_AGE = 90
EXCHANGE_FAILED = "Shopify did not grant popsync an access token; reload the page to try again."
NOT_CONFIGURED = "Shopify is not configured on this popsync: set SHOPIFY_API_KEY and SHOPIFY_API_SECRET."

HOME_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="shopify-api-key" content="{{ api_key }}">
<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js"></script>
<title>popsync</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem;color:#202223}</style></head><body>
<h1>popsync</h1>
<p>popsync is installed on {{ domain }}.</p>
</body></html>"""

LANDING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>popsync</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem;color:#202223}</style></head><body>
<h1>popsync</h1>
<p>popsync runs inside your store's admin. Open it from the Apps section of your Shopify admin.</p>
</body></html>"""


class QueryError(ValueError):
    """A signed query from Shopify does not verify; the message says why."""


def query_hmac(params: Mapping[str, str], secret: str) -> str:
    """Shopify's ``hmac`` of a query: every parameter but ``hmac``, sorted by name, ``name=value`` joined
    by ``&``, HMAC-SHA256 with the app's client secret, lower-case hex."""
    message = "&".join(f"{name}={value}" for name, value in sorted(params.items()) if name != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_query(
    args: MultiDict[str, str],
    secrets_: Sequence[str],
    *,
    now: float | None = None,
    max_age: int = HMAC_MAX_AGE,
) -> None:
    """Raise QueryError unless ``args`` carry a valid ``hmac`` (under any of ``secrets_``) and a fresh
    ``timestamp``. A repeated parameter is refused: Shopify never sends one here, and the libraries
    disagree on how to sign it."""
    given = args.get("hmac", "")
    if not given:
        raise QueryError("the hmac parameter is missing")
    if any(len(values) > 1 for _, values in args.lists()):
        raise QueryError("a query parameter is repeated")
    params = args.to_dict()
    if not any(
        hmac.compare_digest(query_hmac(params, secret).encode(), given.encode())
        for secret in secrets_
        if secret
    ):
        raise QueryError("the hmac does not verify")
    try:
        timestamp = int(params.get("timestamp", ""))
    except ValueError:
        raise QueryError("the timestamp parameter is missing") from None
    if abs((time.time() if now is None else now) - timestamp) > max_age:
        raise QueryError("the signed link has expired; open popsync from the Shopify admin again")


class AdminOriginTransport(httpx.BaseTransport):
    """Sends what is meant for ``https://<shop>.myshopify.com`` to ``SHOPIFY_ADMIN_ORIGIN`` instead, same
    path and query, naming the shop in ``X-Forwarded-Host`` as ``app.platforms.http.admin_url`` does
    (``shopifyapp`` builds Shopify's URLs itself and only lets us choose the client)."""

    def __init__(self, origin: str, inner: httpx.BaseTransport | None = None) -> None:
        self.origin = httpx.URL(origin)
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.scheme == "https" and host.endswith(".myshopify.com"):
            request.url = request.url.copy_with(
                scheme=self.origin.scheme, host=self.origin.host, port=self.origin.port
            )
            request.headers["Host"] = self.origin.netloc.decode("ascii")
            request.headers["X-Forwarded-Host"] = host
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def shopify_http_client(settings: Settings) -> httpx.Client:
    """The httpx client ``shopifyapp`` calls Shopify with: our timeout, and the origin rewrite when set."""
    transport = AdminOriginTransport(settings.shopify_admin_origin) if settings.shopify_admin_origin else None
    return httpx.Client(timeout=settings.platform_timeout, transport=transport, follow_redirects=False)


# --- views ----------------------------------------------------------------------------------------------


@bp.get("/")
def app_home() -> Any:
    """The embedded app home: the page when the session token (``id_token``) is valid, after getting the
    shop an offline token by token exchange if it has none usable; a 302 to the patch-ID-token page when
    the token is missing or stale; 401 for a forged one; a short note outside the Shopify admin; 503
    when Shopify is not configured."""
    if not ({"shop", "id_token"} & request.args.keys()) and "Authorization" not in request.headers:
        return Response(LANDING_PAGE, 200, mimetype="text/html")
    settings = current_settings()
    shopify = _shopify_app(settings)
    if shopify is None:
        return _plain(503, NOT_CONFIGURED)
    result = shopify.verify_app_home_req(_request_input(), PATCH_ID_TOKEN_PATH)
    if not result.ok or result.id_token is None:
        log.info("app home request not verified (%s)", result.log.code)
        return _sdk_response(result.response.status, result.response.body, result.response.headers)
    fetch = "Authorization" in request.headers
    try:
        # shopifyapp checks signature, expiry and audience; dest and iss are ours to check.
        domain = verify_session_token(
            result.id_token.token, api_key=settings.shopify_api_key, secrets=_secrets(settings)
        )
    except SessionTokenError as error:
        response = _plain(401, str(error))
        if fetch:
            response.headers[RETRY_SESSION_HEADER] = "1"
        return response
    # A session of its own, closed before the exchange: no transaction stays open across a call to Shopify.
    with get_database().sessionmaker() as session:
        shop = find_shop(session, domain)
        usable = (
            shop is not None and shop.installed and shop.access_token is not None and not shop.needs_reauth
        )
    if not usable:
        try:
            with shopify_http_client(settings) as client:
                exchanged = shopify.exchange_using_token_exchange(
                    "offline",
                    id_token=result.id_token,
                    invalid_token_response=result.invalid_token_response,
                    expiring=True,
                    http_client=client,
                )
        except ValueError:
            # shopifyapp reads a throttled answer's Retry-After with int(), which a fractional value breaks.
            log.warning("token exchange for %s failed (unreadable answer)", domain)
            return _plain(502, EXCHANGE_FAILED)
        if not exchanged.ok or exchanged.access_token is None:
            log.warning("token exchange for %s failed (%s)", domain, exchanged.log.code)
            if exchanged.log.code == "invalid_subject_token":
                # A stale ID token: the prepared answer makes App Bridge fetch a fresh one.
                refused = exchanged.response
                return _sdk_response(refused.status, refused.body, refused.headers)
            return _plain(502, EXCHANGE_FAILED)
        shop_id = save_grant(domain, _grant_from_exchange(exchanged.access_token))
        requeue_failed(get_database(), shop_id)
        log.info("shop %s got an offline token by token exchange", domain)
    # The app home is the admin's dashboard, embedded (app.admin.pages); its links lead to the other pages.
    response = embedded_home(domain)
    if response is None:
        page = render_template_string(HOME_PAGE, api_key=settings.shopify_api_key, domain=domain)
        response = Response(page, 200, mimetype="text/html")
    # App Bridge's preloads, and shopifyapp's frame-ancestors CSP unless the page set a stricter one of its
    # own (the dashboard's, app.admin.pages.EMBEDDED_CSP, has the same frame-ancestors).
    for name, value in result.response.headers.items():
        if name.lower() != "content-security-policy" or "Content-Security-Policy" not in response.headers:
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(PATCH_ID_TOKEN_PATH)
def patch_id_token() -> Any:
    """The patch-ID-token page: App Bridge alone, which reloads ``shopify-reload`` with a fresh ``id_token``;
    400 for a bad ``shop`` or a reload target that is not a path of this app; 503 when not configured."""
    settings = current_settings()
    shopify = _shopify_app(settings)
    if shopify is None:
        return _plain(503, NOT_CONFIGURED)
    try:
        _shop_domain(request.args.get("shop", ""))
    except ShopError:
        return _plain(400, "shop must be a name.myshopify.com domain")
    reload_path = request.args.get("shopify-reload", "")
    # Only a path of this app: App Bridge navigates there, so anything else would be an open redirect.
    if not is_local_path(reload_path):
        return _plain(400, "shopify-reload must be a path of this app")
    result = shopify.app_home_patch_id_token(_request_input())
    response = _sdk_response(result.response.status, result.response.body, result.response.headers)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/auth/shopify")
def install() -> Any:
    """Start the authorization-code install: 302 to the shop's grant page with a ``state`` nonce kept in a
    signed cookie; 400 for anything but a myshopify.com shop, 401 when an ``hmac`` is present and does
    not verify, 503 when Shopify is not configured. Nothing is requested from Shopify here."""
    settings = current_settings()
    if not _configured(settings):
        return _plain(503, NOT_CONFIGURED)
    try:
        domain = _shop_domain(request.args.get("shop", ""))
    except ShopError:
        return _plain(400, "shop must be a name.myshopify.com domain")
    if "hmac" in request.args:
        try:
            verify_query(request.args, _secrets(settings))
        except QueryError as error:
            return _plain(401, str(error))
    state = secrets.token_urlsafe(32)
    query = urlencode(
        {
            "client_id": settings.shopify_api_key,
            "scope": SCOPES,
            "redirect_uri": f"{settings.app_url}{CALLBACK_PATH}",
            "state": state,
        }
    )
    response = redirect(f"https://{domain}/admin/oauth/authorize?{query}", 302)
    response.set_cookie(
        STATE_COOKIE,
        _state_serializer().dumps({"state": state, "shop": domain}),
        max_age=STATE_MAX_AGE,
        path=STATE_COOKIE_PATH,
        secure=settings.app_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(CALLBACK_PATH)
def callback() -> Any:
    """Finish the authorization-code install: verify ``hmac``, ``shop`` and ``state`` (else 400/401/403
    and no token request), trade the code for an expiring offline token, store it, queue failed writes
    again and 302 to the app in the shop's admin; 502 when Shopify does not grant the token."""
    settings = current_settings()
    if not _configured(settings):
        return _plain(503, NOT_CONFIGURED)
    try:
        domain = _shop_domain(request.args.get("shop", ""))
    except ShopError:
        return _plain(400, "shop must be a name.myshopify.com domain")
    try:
        verify_query(request.args, _secrets(settings))
    except QueryError as error:
        return _plain(401, str(error))
    problem = _check_state(domain, request.args.get("state", ""))
    if problem:
        return _plain(403, problem)
    code = request.args.get("code", "")
    if not code:
        return _plain(400, "the code parameter is missing")
    try:
        grant = request_shopify_token(domain, {"code": code, "expiring": "1"}, settings)
    except PlatformError as error:
        log.warning("authorization code of %s not exchanged: %s", domain, error)
        response = _plain(502, "Shopify did not grant popsync an access token; start the install again.")
    else:
        shop_id = save_grant(domain, grant)
        requeue_failed(get_database(), shop_id)
        log.info("shop %s installed popsync (authorization code)", domain)
        response = redirect(f"https://{domain}/admin/apps/{settings.shopify_api_key}", 302)
    # The state is spent either way: a replayed callback finds no cookie.
    response.delete_cookie(
        STATE_COOKIE, path=STATE_COOKIE_PATH, secure=settings.app_url.startswith("https://"), httponly=True
    )
    return response


# --- helpers --------------------------------------------------------------------------------------------


def is_local_path(value: str) -> bool:
    r"""Whether a browser told to go to ``value`` stays on this app's origin: one leading slash, and no
    backslash or control character (browsers drop tabs and line breaks and read ``\`` as ``/``, so
    ``/<tab>/evil.com`` and ``/\evil.com`` are ``//evil.com``, another origin)."""
    if any(char == "\\" or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return False
    return value.startswith("/") and not value.startswith("//")


def save_grant(domain: str, grant: ShopifyGrant) -> int:
    """Register the shop (or renew its tokens, reinstalling it if it had uninstalled); its id."""
    keyring = current_app.extensions["popsync.keyring"]
    with get_database().write_transaction() as session:
        shop = register_shop(
            session,
            keyring,
            platform=Platform.SHOPIFY,
            domain=domain,
            token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at,
        )
        # register_shop seals both tokens; the refresh token's expiry and the granted scopes are plain.
        shop.refresh_token_expires_at = grant.refresh_expires_at
        if grant.scope:
            shop.scopes = grant.scope
        start_backfill(session, shop, utcnow())
        return shop.id


def _grant_from_exchange(token: TokenExchangeAccessToken) -> ShopifyGrant:
    return ShopifyGrant(
        access_token=token.token,
        expires_at=_parse_time(token.expires),
        refresh_token=token.refresh_token or None,
        refresh_expires_at=_parse_time(token.refresh_token_expires),
        scope=token.scope or None,
    )


def _parse_time(value: str | None) -> datetime | None:
    # shopifyapp writes expiries as "2026-10-01T12:00:00Z".
    return datetime.fromisoformat(value) if value else None


def _check_state(domain: str, given: str) -> str | None:
    """Why the callback's ``state`` is not the one this browser was sent off with, or None."""
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not cookie:
        return "the install was not started from this browser (no state cookie); start it again"
    try:
        saved = _state_serializer().loads(cookie, max_age=STATE_MAX_AGE)
    except SignatureExpired:
        return "the install took too long; start it again"
    except BadSignature:
        return "the state cookie is not valid; start the install again"
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), str):
        return "the state cookie is not valid; start the install again"
    if not given or not hmac.compare_digest(saved["state"].encode(), given.encode()):
        return "the state does not match; start the install again"
    if saved.get("shop") != domain:
        return "the install was started for another shop; start it again"
    return None


def _state_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=STATE_SALT)


def _shop_domain(value: str) -> str:
    _, domain = normalize_shop_domain(value, Platform.SHOPIFY)
    return domain


def _configured(settings: Settings) -> bool:
    return bool(settings.shopify_api_key and settings.shopify_api_secret)


def _secrets(settings: Settings) -> tuple[str, ...]:
    return tuple(s for s in (settings.shopify_api_secret, settings.shopify_api_secret_previous) if s)


def _shopify_app(settings: Settings) -> ShopifyApp | None:
    if not _configured(settings):
        return None
    return ShopifyApp(
        settings.shopify_api_key,
        settings.shopify_api_secret,
        old_client_secret=settings.shopify_api_secret_previous or None,
    )


def _request_input() -> dict[str, Any]:
    """The request as shopifyapp reads it."""
    return {"method": request.method, "headers": dict(request.headers), "url": request.url, "body": ""}


def _sdk_response(status: int, body: str, headers: Mapping[str, str]) -> Response:
    response = Response(body, status, mimetype="text/html" if body.startswith("<") else "text/plain")
    response.headers.update(headers)
    return response


def _plain(status: int, message: str) -> Response:
    return Response(message, status, mimetype="text/plain")
