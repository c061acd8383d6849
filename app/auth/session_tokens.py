"""Shopify session tokens: the App Bridge ID token that authenticates the embedded admin's requests.

A session token is a JWT signed HS256 with the app's client secret, one minute long, naming the shop in
``dest`` (``https://<shop>.myshopify.com``) and its admin in ``iss`` (``https://<shop>.myshopify.com/admin``).
Everything is checked here, strictly: the algorithm (HS256 and nothing else, so ``none`` and RS256-with-
the-secret-as-a-public-key tricks fail), the signature, ``aud`` (our client id), ``exp``/``nbf`` with the
10 s leeway Shopify's own libraries allow (App Bridge often sends an ``nbf`` a little in the future), and
that ``dest`` is exactly a valid myshopify origin whose admin is ``iss``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jwt

from app.enums import Platform
from app.shops import ShopError
from app.shops import normalize_shop_domain

ALGORITHM = "HS256"
LEEWAY_SECONDS = 10
# Real session tokens are under 1 KB; anything far larger is refused before any decoding work.
MAX_TOKEN_LENGTH = 8192
REQUIRED_CLAIMS = ["exp", "nbf", "iss", "dest", "aud"]


class SessionTokenError(ValueError):
    """The session token is not valid; the message says why (never the token itself)."""


def verify_session_token(token: str, *, api_key: str, secrets: Sequence[str]) -> str:
    """The shop domain (``name.myshopify.com``) a valid session token names; SessionTokenError otherwise.

    ``secrets`` is the current client secret, then any previous one still accepted during a rotation.
    """
    if not api_key or not any(secrets):
        raise SessionTokenError("Shopify is not configured (SHOPIFY_API_KEY, SHOPIFY_API_SECRET)")
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise SessionTokenError("malformed session token")
    claims = _decode(token, api_key, [secret for secret in secrets if secret])
    # PyJWT also accepts a list ``aud`` that contains our id; Shopify always sends our id alone.
    if claims.get("aud") != api_key:
        raise SessionTokenError("session token audience is not this app")
    dest = claims.get("dest")
    iss = claims.get("iss")
    if not isinstance(dest, str) or not dest.startswith("https://"):
        raise SessionTokenError("session token dest is not a shop origin")
    try:
        _, domain = normalize_shop_domain(dest.removeprefix("https://"), Platform.SHOPIFY)
    except ShopError:
        raise SessionTokenError("session token dest is not a myshopify.com shop") from None
    # The exact origin, not a normalised one: "https://x.myshopify.com/" or " x…" are not what Shopify signs.
    if dest != f"https://{domain}":
        raise SessionTokenError("session token dest is not a shop origin")
    if iss != f"{dest}/admin":
        raise SessionTokenError("session token issuer is not the admin of its shop")
    return domain


def _decode(token: str, api_key: str, secrets: list[str]) -> dict[str, object]:
    for secret in secrets:
        try:
            return jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=api_key,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError:
            # Signed with another secret: maybe the previous one, during a rotation.
            continue
        except jwt.ExpiredSignatureError:
            raise SessionTokenError("session token expired") from None
        except jwt.ImmatureSignatureError:
            raise SessionTokenError("session token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise SessionTokenError("session token audience is not this app") from None
        except jwt.MissingRequiredClaimError as error:
            raise SessionTokenError(f"session token lacks the {error.claim} claim") from None
        except jwt.InvalidAlgorithmError:
            raise SessionTokenError("session token is not signed HS256") from None
        except jwt.PyJWTError:
            raise SessionTokenError("malformed session token") from None
    raise SessionTokenError("session token signature does not verify")
