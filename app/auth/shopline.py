"""SHOPLINE install and open: the signed app URL and the OAuth callback (reference/shopline.md §1).

SHOPLINE opens ``GET /shopline`` (the app URL) on install and on every open, and sends the merchant back to
``GET /auth/shopline/callback`` after they grant access. Both requests are signed with the app secret over
their sorted parameters (§1.5). Each is checked before anything else is done with it, and a request that
fails a check gets a 4xx without a database write or an outbound request:

1. no parameter given twice, and ``handle`` exactly a store handle (``demo``) or its domain
   (``demo.myshopline.com``);
2. ``appkey`` is this app's, ``sign`` is genuine and ``timestamp`` (ms) within ten minutes of now;
3. on the callback, ``customField`` equals the nonce in the short-lived sealed state cookie that ``/shopline``
   set in this browser, for the same shop, and a ``code`` is present.

The callback then creates the access token, registers the shop, queues its failed writes again,
subscribes its webhooks, and opens the merchant's admin session (app.auth.admin_session). The app is
non-embedded (redirect mode): every page is a top-level page in SHOPLINE's new tab.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import redirect
from flask import request
from werkzeug.wrappers import Response

from app.auth.admin_session import start_session
from app.auth.replay import first_use
from app.config import Settings
from app.config import current_settings
from app.crypto import InvalidSealError
from app.crypto import Keyring
from app.db import get_database
from app.db import request_session
from app.db import utcnow
from app.enums import Platform
from app.jobs import requeue_failed
from app.models import Shop
from app.platforms.base import AuthFailed
from app.platforms.base import PlatformError
from app.platforms.base import RetryLater
from app.platforms.budget import RateBudget
from app.platforms.shopline import create_access_token
from app.platforms.shopline_signing import MAX_SKEW_MS
from app.platforms.shopline_signing import verify_get
from app.platforms.shopline_webhooks import TOPICS
from app.platforms.shopline_webhooks import ShoplineWebhookApi
from app.platforms.shopline_webhooks import ensure_subscriptions
from app.platforms.shopline_webhooks import webhook_address
from app.pulls import start_backfill
from app.shops import normalize_shop_domain
from app.shops import register_shop

log = logging.getLogger("popsync.auth.shopline")

bp = Blueprint("shopline_auth", __name__)

CALLBACK_PATH = "/auth/shopline/callback"
ADMIN_HOME = "/admin"
SCOPES = ("read_customers", "write_customers")
STATE_COOKIE = "popsync_shopline_state"
STATE_PURPOSE = "shopline-oauth-state"
# SHOPLINE's authorisation code lives ten minutes; the state need not outlive it.
STATE_LIFETIME_SECONDS = 600
# The state cookie goes only to the callback.
STATE_COOKIE_PATH = "/auth/shopline"
MAX_CODE_LENGTH = 512
MAX_QUERY_LENGTH = 4096
# A bare handle (``demo``) or the full store domain; nothing else (no ports, paths, userinfo, suffixes).
_HANDLE = re.compile(r"[a-z0-9][a-z0-9-]{0,59}(?:\.myshopline\.com)?")


class Refused(Exception):
    """A request that fails a check: its status and a message safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    domain: str
    params: dict[str, str]


def _no_store(response: Response) -> Response:
    # These answers carry session cookies and are reached from signed URLs: never cache them, and never
    # send the signed URL on as a referrer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.errorhandler(Refused)
def _refused(error: Refused) -> Response:
    response = Response(error.message + "\n", status=error.status, mimetype="text/plain")
    if request.path == CALLBACK_PATH:
        _clear_state(response, current_settings())
    return _no_store(response)


def _settings() -> Settings:
    settings = current_settings()
    if not settings.shopline_app_key or not settings.shopline_app_secret:
        raise Refused(
            503, "SHOPLINE is not configured on this popsync (SHOPLINE_APP_KEY, SHOPLINE_APP_SECRET)"
        )
    return settings


def shop_domain_from_handle(handle: str | None) -> str | None:
    """The store domain for SHOPLINE's ``handle`` parameter, or None unless it is exactly a handle or a
    ``handle.myshopline.com`` domain (lower-case, as SHOPLINE sends it)."""
    if not handle or not _HANDLE.fullmatch(handle):
        return None
    domain = handle if handle.endswith(".myshopline.com") else f"{handle}.myshopline.com"
    try:
        return normalize_shop_domain(domain, Platform.SHOPLINE)[1]
    except ValueError:
        return None


def _signed_request(settings: Settings) -> SignedRequest:
    """The checked parameters of the current request, or Refused (steps 1 and 2 of the module's list)."""
    if len(request.query_string) > MAX_QUERY_LENGTH:
        raise Refused(400, "the request is too long")
    if any(len(values) > 1 for values in request.args.listvalues()):
        raise Refused(400, "a parameter was given more than once")
    params = request.args.to_dict()
    domain = shop_domain_from_handle(params.get("handle"))
    if domain is None:
        raise Refused(400, "handle must be a SHOPLINE store handle")
    if not hmac.compare_digest(
        params.get("appkey", "").encode("utf-8", "replace"), settings.shopline_app_key.encode()
    ):
        raise Refused(401, "the request is not for this app")
    now_ms = int(time.time() * 1000)
    raw_query = request.query_string.decode("ascii", "replace")
    if not verify_get(params, settings.shopline_app_secret, now_ms, raw_query=raw_query):
        raise Refused(401, "the request's signature is invalid or has expired; open the app from your store")
    return SignedRequest(domain=domain, params=params)


def authorize_url(domain: str, app_key: str, redirect_uri: str, state: str) -> str:
    """SHOPLINE's authorize page. Its parameters live in the URL fragment after the ``#/`` route (§1.3),
    so the string is built by hand: a URL library would move or drop them."""
    query = "&".join(
        f"{name}={quote(value, safe='')}"
        for name, value in (
            ("appKey", app_key),
            ("responseType", "code"),
            ("scope", ",".join(SCOPES)),
            ("redirectUri", redirect_uri),
            ("customField", state),
        )
    )
    return f"https://{domain}/admin/oauth-web/#/oauth/authorize?{query}"


def _keyring() -> Keyring:
    return current_app.extensions["popsync.keyring"]


def _set_state(response: Response, settings: Settings, nonce: str, domain: str) -> None:
    claims = {"nonce": nonce, "domain": domain, "exp": int(time.time()) + STATE_LIFETIME_SECONDS}
    value = _keyring().seal(STATE_PURPOSE, json.dumps(claims, separators=(",", ":")).encode())
    response.set_cookie(
        STATE_COOKIE,
        value,
        max_age=STATE_LIFETIME_SECONDS,
        path=STATE_COOKIE_PATH,
        secure=settings.app_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


def _clear_state(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        STATE_COOKIE,
        path=STATE_COOKIE_PATH,
        secure=settings.app_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


def _check_state(signed: SignedRequest) -> None:
    """Step 3: the state cookie is genuine, fresh, for this shop, and its nonce is ``customField``."""
    given = signed.params.get("customField", "")
    sealed = request.cookies.get(STATE_COOKIE, "")
    if not given or not sealed or len(sealed) > 1024:
        raise Refused(403, "the install was not started in this browser; open the app from your store")
    try:
        claims = json.loads(_keyring().open(STATE_PURPOSE, sealed))
    except (InvalidSealError, ValueError):
        raise Refused(403, "the install state is invalid; open the app from your store") from None
    if not isinstance(claims, dict):
        raise Refused(403, "the install state is invalid; open the app from your store")
    nonce, domain, expires = claims.get("nonce"), claims.get("domain"), claims.get("exp")
    if not isinstance(nonce, str) or not isinstance(domain, str) or not isinstance(expires, int):
        raise Refused(403, "the install state is invalid; open the app from your store")
    if expires <= time.time():
        raise Refused(403, "the install took too long; open the app from your store again")
    same_nonce = hmac.compare_digest(nonce.encode(), given.encode("utf-8", "replace"))
    if not same_nonce or domain != signed.domain:
        raise Refused(403, "the install state does not match; open the app from your store")


def _installed_shop(domain: str) -> Shop | None:
    """The shop if it is installed with a token that is still good; else None (it needs authorising)."""
    shop = request_session().scalars(sa.select(Shop).where(Shop.domain == domain)).first()
    if shop is None or shop.platform != Platform.SHOPLINE or not shop.installed:
        return None
    if not shop.access_token or shop.needs_reauth:
        return None
    expires_at = shop.access_token_expires_at
    if expires_at is not None and expires_at <= utcnow():
        return None
    return shop


@bp.get("/shopline")
def open_app() -> Response:
    """SHOPLINE's app URL, opened on install and on every open. Answers 302 to the admin home with a new
    admin session for an installed shop, else 302 to SHOPLINE's authorize page (with a state cookie);
    400 for a malformed request, 401 for a forged or stale one, 503 when SHOPLINE is not configured."""
    settings = _settings()
    signed = _signed_request(settings)
    # Inside its ten minutes a signed URL would open the admin for whoever holds it: honour it once.
    keep_until = utcnow() + timedelta(milliseconds=2 * MAX_SKEW_MS)
    if not first_use(get_database(), "shopline-open", signed.params["sign"], keep_until=keep_until):
        raise Refused(401, "this link was already used; open the app from your store again")
    shop = _installed_shop(signed.domain)
    if shop is not None:
        response = redirect(ADMIN_HOME)
        start_session(response, shop)
        return _no_store(response)
    nonce = secrets.token_urlsafe(32)
    redirect_uri = settings.app_url + CALLBACK_PATH
    response = redirect(authorize_url(signed.domain, settings.shopline_app_key, redirect_uri, nonce))
    _set_state(response, settings, nonce, signed.domain)
    return _no_store(response)


@bp.get(CALLBACK_PATH)
def callback() -> Response:
    """SHOPLINE's OAuth callback. Answers 302 to the admin home once the token is created and stored (the
    admin session set); 400/401/403 for a malformed, forged, stale or unrequested callback (no token is
    requested then); 403 when SHOPLINE refuses the code; 503 when SHOPLINE cannot answer now."""
    settings = _settings()
    signed = _signed_request(settings)
    _check_state(signed)
    code = signed.params.get("code", "")
    if not code or len(code) > MAX_CODE_LENGTH:
        raise Refused(400, "the callback carries no authorisation code")
    try:
        token, expires_at = create_access_token(
            signed.domain,
            settings.shopline_app_key,
            settings.shopline_app_secret,
            code,
            admin_origin=settings.shopline_admin_origin,
            timeout=settings.platform_timeout,
        )
    except AuthFailed as error:
        log.warning("SHOPLINE refused the token for %s: %s", signed.domain, error)
        raise Refused(403, "SHOPLINE refused the authorisation; open the app from your store again") from None
    except RetryLater as error:
        log.warning("SHOPLINE token for %s not created: %s", signed.domain, error)
        raise Refused(
            503, "SHOPLINE cannot be reached just now; open the app from your store again"
        ) from None

    db = get_database()
    keyring = _keyring()
    with db.write_transaction() as session:
        shop = register_shop(
            session,
            keyring,
            platform=Platform.SHOPLINE,
            domain=signed.domain,
            token=token,
            expires_at=expires_at,
        )
        start_backfill(session, shop, utcnow())
    log.info("SHOPLINE shop %s (%s) authorised", shop.id, shop.domain)
    requeue_failed(db, shop.id)
    _subscribe_webhooks(shop, settings, keyring)

    response = redirect(ADMIN_HOME)
    start_session(response, shop)
    _clear_state(response, settings)
    return _no_store(response)


def _subscribe_webhooks(shop: Shop, settings: Settings, keyring: Keyring) -> None:
    # The install goes on when this fails: the daily re-check (shopline_webhooks.check_shop) catches up.
    api: ShoplineWebhookApi | None = None
    try:
        api = ShoplineWebhookApi.for_shop(
            shop, settings=settings, keyring=keyring, budget=RateBudget(get_database())
        )
        changes = ensure_subscriptions(api, TOPICS, webhook_address(settings.app_url))
        for topic, reason in changes.failed.items():
            log.warning("SHOPLINE refused the %s webhook for shop %s: %s", topic, shop.id, reason)
    except PlatformError as error:
        log.warning("webhooks of SHOPLINE shop %s not subscribed yet: %s", shop.id, error)
    finally:
        if api is not None:
            api.close()
