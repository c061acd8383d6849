"""Public tracking routes: the open pixel, the click redirect, and the unsubscribe page.

- ``GET /t/o/<token>.gif``: always ``200`` and the 1x1 GIF with ``Cache-Control: no-store``, whatever the
  token, and also when the database is down. A valid token records the open (one row, ``hits.py``); the
  worker syncs it later (``drain.py``). Answered by ``OpenPixelEndpoint``, in front of Flask.
- ``GET /t/c/<token>``: ``302`` to the URL sealed in the token, and only there; records the click. A bad
  token is ``404`` without a ``Location``.
- ``GET /u/<token>``: a small page with a button; it changes nothing (mail scanners fetch links).
  ``POST /u/<token>``, any body (RFC 8058 one-click included): unsubscribes, ``200``.

Nothing here logs a token, an identifier or a URL: errors are logged by their class only.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import request

from app.contacts.normalize import FieldError
from app.contacts.service import get_service
from app.crypto import Keyring
from app.db import Database
from app.db import get_database
from app.db import utcnow
from app.models import Shop
from app.ops.requests import ROUTE_ENVIRON
from app.ops.requests import WSGIApp
from app.tracking.hits import CLICK
from app.tracking.hits import OPEN
from app.tracking.hits import record_hit
from app.tracking.tokens import InvalidTokenError
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import open_token
from app.tracking.tokens import validate_target_url
from app.tracking.unsubscribe import unsubscribe

bp = Blueprint("tracking", __name__)
log = logging.getLogger("popsync.tracking")

# The smallest transparent 1x1 GIF (43 bytes).
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def _keyring() -> Keyring:
    return current_app.extensions["popsync.keyring"]


def _record(link: TrackingLink, token: str, kind: str) -> None:
    """Record a hit from Flask's request (the click): see ``record_safely``."""
    record_safely(
        get_database(),
        _keyring(),
        link,
        token,
        kind,
        method=request.method,
        user_agent=request.headers.get("User-Agent"),
        client_address=request.remote_addr,
    )


def record_safely(
    database: Database,
    keyring: Keyring,
    link: TrackingLink,
    token: str,
    kind: str,
    *,
    method: str,
    user_agent: str | None,
    client_address: str | None,
) -> None:
    """Record a hit unless the link is too old or the request is not a GET; never raises (the answer must
    not depend on it)."""
    try:
        now = utcnow()
        if link.expired(now) or method != "GET":
            return
        record_hit(
            database,
            keyring,
            link,
            token,
            kind=kind,
            user_agent=user_agent,
            client_address=client_address,
            now=now,
        )
    except Exception as error:
        # The database is down or slow to come back: the recipient still gets the pixel or the page.
        log.warning("%s not recorded: %s", kind, type(error).__name__)


def opened_link(keyring: Keyring, token: str) -> TrackingLink | None:
    """The link a pixel's token carries, or None for anything else; never raises (the GIF goes out)."""
    try:
        return open_token(keyring, token)
    except InvalidTokenError:
        return None
    except Exception as error:  # never anything but the GIF, whatever happens
        log.warning("open not read: %s", type(error).__name__)
        return None


PIXEL_ROUTE = "/t/o/<token>.gif"
_PIXEL_PREFIX, _PIXEL_SUFFIX = "/t/o/", ".gif"
_PIXEL_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(PIXEL))),
    ("Cache-Control", "no-store"),
]


@bp.get(PIXEL_ROUTE)
def open_pixel(token: str) -> Response:
    """The open pixel through Flask: only what ``OpenPixelEndpoint`` passes on reaches it (in practice
    nothing but its URL rule's 405 for other methods); the same answer."""
    link = opened_link(_keyring(), token)
    if link is not None:
        _record(link, token, OPEN)
    return Response(PIXEL, status=200, headers=_PIXEL_HEADERS)


class OpenPixelEndpoint:
    """``GET`` and ``HEAD /t/o/<token>.gif`` answered before Flask, everything else passed on to it.

    The pixel is the most requested URL popsync serves (every open of every email), and Flask's request
    and response objects, URL matching and context push cost as much CPU as the rest of the pixel's own
    work (docs/performance.md, "Open pixel"). This does what the Flask view does with the WSGI environ:
    the same token check, the same ``record_safely``, the same 43-byte GIF and headers. It sits inside
    ProxyFix (so ``REMOTE_ADDR`` is the shopper's address) and inside the request-id and metrics
    middleware (so the request is counted and logged under its route like any other).
    """

    def __init__(self, wsgi_app: WSGIApp, flask_app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.flask_app = flask_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        token = path[len(_PIXEL_PREFIX) : -len(_PIXEL_SUFFIX)]
        if (
            method not in ("GET", "HEAD")
            or not path.startswith(_PIXEL_PREFIX)
            or not path.endswith(_PIXEL_SUFFIX)
            or not token
            or "/" in token  # as Flask's <token> converter: one path segment
        ):
            return self.wsgi_app(environ, start_response)
        environ[ROUTE_ENVIRON] = PIXEL_ROUTE
        extensions = self.flask_app.extensions
        keyring: Keyring = extensions["popsync.keyring"]
        link = opened_link(keyring, token)
        if link is not None:
            record_safely(
                extensions["popsync.db"],
                keyring,
                link,
                token,
                OPEN,
                method=method,
                user_agent=environ.get("HTTP_USER_AGENT"),
                client_address=environ.get("REMOTE_ADDR"),
            )
        start_response("200 OK", list(_PIXEL_HEADERS))
        return [PIXEL] if method == "GET" else []


@bp.get("/t/c/<token>")
def click(token: str) -> Any:
    """A tracked link: 302 to the sealed URL (checked again to be http(s)); a bad token is 404."""
    try:
        link = open_token(_keyring(), token)
        target = validate_target_url(link.url)
    except (InvalidTokenError, FieldError):
        abort(404, description="unknown link")
    _record(link, token, CLICK)
    response = Response(status=302)
    # Set as is: the URL was made ASCII when it was sealed, so the header is exactly what was sealed.
    response.headers["Location"] = target
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe_page(token: str) -> Response:
    """GET: the unsubscribe page (changes nothing). POST, any body: unsubscribe that email or phone."""
    try:
        link = open_token(_keyring(), token)
    except InvalidTokenError:
        return _page("Link not recognised", "<p>This unsubscribe link is not valid.</p>", status=404)
    shop_name = _shop_name(link.shop_id)
    channel_words = "emails" if link.channel == "email" else "text messages"
    sender = f" from {html.escape(shop_name)}" if shop_name else ""
    masked = html.escape(_masked(link))
    if request.method == "GET":
        body = (
            f"<p>Stop {channel_words}{sender} to <strong>{masked}</strong>?</p>"
            '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return _page("Unsubscribe", body)
    try:
        unsubscribe(get_service(), link, utcnow())
    except Exception as error:
        log.warning("unsubscribe failed: %s", type(error).__name__)
        return _page(
            "Please try again", "<p>We could not unsubscribe you just now. Please try again.</p>", status=503
        )
    return _page(
        "Unsubscribed", f"<p><strong>{masked}</strong> will get no more {channel_words}{sender}.</p>"
    )


def _shop_name(shop_id: int) -> str | None:
    try:
        with get_database().sessionmaker() as session:
            shop = session.get(Shop, shop_id)
            return (shop.name or shop.domain) if shop is not None else None
    except Exception as error:
        log.warning("unsubscribe page without the shop's name: %s", type(error).__name__)
        return None


def _masked(link: TrackingLink) -> str:
    """Enough for the recipient to recognise their address, not enough to learn it from a forwarded page."""
    if link.channel == "email" and link.email:
        local, _, domain = link.email.partition("@")
        return f"{local[:1]}•••@{domain}"
    phone = link.phone or ""
    return f"•••{phone[-4:]}"


def _page(title: str, body: str, status: int = 200) -> Response:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
        "button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(
        document,
        status=status,
        mimetype="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        },
    )
