"""SHOPLINE's signatures, as pure functions (reference/shopline.md §1.5 to 1.8 and §2.3).

- GET requests SHOPLINE sends the app (install/open, OAuth callback): every query parameter but ``sign``,
  sorted by key, joined ``k=v`` with ``&``, HMAC-SHA256 with the app secret, lower-case hex; the
  ``timestamp`` parameter is in milliseconds and must be within ten minutes of now.
- POST requests the app sends SHOPLINE (token create and refresh): HMAC-SHA256 of the body followed by the
  ``timestamp`` header, lower-case hex.
- Webhooks: HMAC-SHA256 of the raw body with the app secret. The official SDKs send hex, the docs show
  base64: both are accepted.

Every comparison is constant-time, and an empty secret verifies nothing (it would let anyone sign).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

# SHOPLINE's own window for signed GET requests (the zh "generate and verify signatures" page).
MAX_SKEW_MS = 600_000


def _hmac_hex(secret: str, message: str | bytes) -> str:
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    # compare_digest on str refuses non-ASCII; bytes keep a forged header from raising instead of failing.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def sign_get(params: Mapping[str, str], secret: str) -> str:
    """The ``sign`` of a GET request: sorted decoded parameters except ``sign``, ``k=v`` joined by ``&``."""
    source = "&".join(f"{key}={params[key]}" for key in sorted(params) if key != "sign")
    return _hmac_hex(secret, source)


def _raw_params(query: str) -> dict[str, str]:
    pairs = (part.split("=", 1) if "=" in part else (part, "") for part in query.split("&") if part)
    return dict(pairs)


def verify_get(
    params: Mapping[str, str],
    secret: str,
    now_ms: int,
    max_skew_ms: int = MAX_SKEW_MS,
    *,
    raw_query: str | None = None,
) -> bool:
    """Whether a signed GET request is genuine and fresh.

    ``params`` are the decoded query parameters (single values). SHOPLINE's docs also describe signing the
    still-encoded values; with ``raw_query`` (the request's query string) that form is accepted too.
    """
    given = params.get("sign") or ""
    if not secret or not given:
        return False
    timestamp = params.get("timestamp") or ""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now_ms - int(timestamp)) > max_skew_ms:
        return False
    if _same(sign_get(params, secret), given):
        return True
    return raw_query is not None and _same(sign_get(_raw_params(raw_query), secret), given)


def sign_post(body: str, timestamp: str, secret: str) -> str:
    """The ``sign`` header of a POST to SHOPLINE: hex HMAC of the exact body string, then the timestamp."""
    return _hmac_hex(secret, body + timestamp)


def verify_post(
    body: str, timestamp: str, signature: str, secret: str, now_ms: int, max_skew_ms: int = MAX_SKEW_MS
) -> bool:
    """Whether a signed POST (body, ``timestamp`` and ``sign`` headers) is genuine and fresh."""
    if not secret or not signature or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now_ms - int(timestamp)) > max_skew_ms:
        return False
    return _same(sign_post(body, timestamp, secret), signature)


def verify_webhook(raw_body: bytes, signature_header: str, secret: str) -> bool:
    """Whether ``X-Shopline-Hmac-Sha256`` signs this exact body; hex (any case) or base64 are accepted."""
    given = (signature_header or "").strip()
    if not secret or not given:
        return False
    digest = hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()
    as_hex = _same(digest.hex(), given.lower())
    as_base64 = _same(base64.b64encode(digest).decode(), given)
    return as_hex or as_base64
