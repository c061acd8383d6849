"""``POST /proxy/submissions``: a popup submission through the Shopify app proxy (the shop's own domain).

Shopify forwards ``https://<shop>/apps/<subpath>/submissions`` here and signs the query it adds (``shop``,
``logged_in_customer_id``, ``path_prefix``, ``timestamp``) with the app's secret. The signature is checked
first; after it, ``shop`` comes from the signed query (a ``shop`` in the body is ignored), a signed
``logged_in_customer_id`` identifies the shopper when no email or phone is collected (rule 1), and the
client address is the ``X-Forwarded-For`` entry Shopify appended.

The check is written out here rather than taken from ``shopifyapp.verify_app_proxy_req``: Shopify's
documentation sorts the ``key=value`` strings (the library sorts keys, which differs for keys such as
``a`` and ``a-b``), the clock must be injectable to test Shopify's published example, and a repeated
``shop``, ``timestamp`` or ``signature`` is refused outright.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from app.config import current_settings
from app.storefront.rate_limit import forwarded_entry
from app.storefront.submissions import accept_submission
from app.storefront.submissions import read_json_body
from app.storefront.views import installed_shop

bp = Blueprint("proxy", __name__, url_prefix="/proxy")

# Shopify's own libraries refuse app proxy requests signed more than 90 seconds away from now.
MAX_CLOCK_SKEW = 90
_SINGLE_VALUED = ("shop", "timestamp", "signature", "logged_in_customer_id")
SHOPIFY_CUSTOMER_GID = "gid://shopify/Customer/{}"


class ProxySignatureError(ValueError):
    """The app proxy request is not signed by Shopify (or no longer fresh); the message says why."""


@dataclass(frozen=True)
class ProxyRequest:
    shop: str
    logged_in_customer_id: str | None


def proxy_message(pairs: Iterable[tuple[str, str]]) -> str:
    """What Shopify signs: each key's ``key=value1,value2``, sorted, concatenated without separators."""
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        if key != "signature":
            values.setdefault(key, []).append(value)
    return "".join(sorted(f"{key}={','.join(items)}" for key, items in values.items()))


def verify_proxy_query(
    pairs: Sequence[tuple[str, str]], secrets: Sequence[str], now: float | None = None
) -> ProxyRequest:
    """Check an app proxy query (decoded ``(key, value)`` pairs, repeats kept) against the app's secrets;
    return the signed shop and customer id, or raise ProxySignatureError."""
    counts: dict[str, int] = {}
    for key, _ in pairs:
        counts[key] = counts.get(key, 0) + 1
    repeated = [key for key in _SINGLE_VALUED if counts.get(key, 0) > 1]
    if repeated:
        raise ProxySignatureError(f"{repeated[0]} is repeated")
    query = dict(pairs)
    signature = query.get("signature", "")
    if not signature:
        raise ProxySignatureError("missing signature")
    if not any(secrets):
        raise ProxySignatureError("the Shopify app secret is not configured")
    message = proxy_message(pairs).encode()
    expected = [hmac.new(s.encode(), message, hashlib.sha256).hexdigest() for s in secrets if s]
    # Compare with every secret, always: the time taken says nothing about which one nearly matched. As
    # bytes: compare_digest refuses str with non-ASCII characters, and a query may hold any.
    given = signature.strip().lower().encode("utf-8", "replace")
    matches = [hmac.compare_digest(candidate.encode(), given) for candidate in expected]
    if not any(matches):
        raise ProxySignatureError("bad signature")
    try:
        timestamp = int(query.get("timestamp", ""))
    except ValueError:
        raise ProxySignatureError("missing or bad timestamp") from None
    if abs((time.time() if now is None else now) - timestamp) > MAX_CLOCK_SKEW:
        raise ProxySignatureError("stale timestamp")
    shop = query.get("shop", "").strip()
    if not shop:
        raise ProxySignatureError("missing shop")
    customer_id = query.get("logged_in_customer_id", "").strip()
    return ProxyRequest(shop=shop, logged_in_customer_id=customer_id if customer_id.isdigit() else None)


def _refuse(message: str, status: int) -> Response:
    response = jsonify({"ok": False, "error": message})
    response.status_code = status
    return response


@bp.post("/submissions")
def create_proxy_submission() -> Response:
    """A submission through the Shopify app proxy: 401 unless signed (and fresh); else the same answers as
    ``/storefront/submissions``."""
    settings = current_settings()
    secrets = [settings.shopify_api_secret, settings.shopify_api_secret_previous]
    try:
        signed = verify_proxy_query(list(request.args.items(multi=True)), secrets)
    except ProxySignatureError as error:
        return _refuse(f"not a signed app proxy request: {error}", 401)
    body = read_json_body()
    shop = installed_shop(signed.shop)
    if shop is None or shop.platform != "shopify":
        return _refuse("unknown shop", 404)
    # Shopify appends the shopper's address to X-Forwarded-For; the PROXY_COUNT proxies in front of the app
    # append theirs after it. Anything further left came from the shopper's browser and is not trusted.
    client = forwarded_entry(settings.proxy_count + 1) or request.remote_addr or "unknown"
    customer_gid = (
        SHOPIFY_CUSTOMER_GID.format(signed.logged_in_customer_id) if signed.logged_in_customer_id else None
    )
    answer = accept_submission(body, shop, client, customer_id=customer_gid)
    response = jsonify(answer.body)
    response.status_code = answer.status
    response.headers.update(answer.headers)
    return response
