"""What both platform clients share: where a shop's Admin API lives, and the HTTP session they use."""

from __future__ import annotations

import requests

USER_AGENT = "popsync/0.1 (+https://github.com/popsync/popsync)"
# Seconds to wait for a platform answer; the worker retries a timeout like a 5xx (looking before creating).
DEFAULT_TIMEOUT = 10.0


def admin_url(shop_domain: str, path: str, admin_origin: str | None) -> tuple[str, dict[str, str]]:
    """The URL for ``path`` on the shop's Admin API, and the headers that go with the origin rewrite.

    With ``SHOPIFY_ADMIN_ORIGIN`` / ``SHOPLINE_ADMIN_ORIGIN`` set (development and tests), the request goes
    to that origin with the same path and query, and ``X-Forwarded-Host`` names the shop it was meant for:
    the development store refuses a token used for another shop.
    """
    if not path.startswith("/"):
        raise ValueError("path must start with /")
    if admin_origin:
        return f"{admin_origin}{path}", {"X-Forwarded-Host": shop_domain}
    return f"https://{shop_domain}{path}", {}


def rewrite_link(link: str, shop_domain: str, admin_origin: str | None) -> str:
    """A next-page link the platform returned, sent to the rewritten origin too (same path and query)."""
    if not admin_origin:
        return link
    prefix = f"https://{shop_domain}"
    if link.startswith(prefix):
        return admin_origin + link[len(prefix) :]
    return link


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # Never follow redirects with a token attached; the Admin APIs do not redirect.
    session.max_redirects = 0
    return session
