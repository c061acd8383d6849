"""Shopify session tokens (App Bridge ID tokens): what verify_session_token accepts and refuses."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.auth.session_tokens import SessionTokenError
from app.auth.session_tokens import verify_session_token

pytestmark = pytest.mark.nodb

API_KEY = "popsync-test-client-id"
SECRET = "shpss_test_secret_0123456789abcdef0123"
PREVIOUS_SECRET = "shpss_previous_secret_0123456789abcdef"


def make_session_token(
    shop: str = "demo.myshopify.com",
    *,
    secret: str = SECRET,
    aud: Any = API_KEY,
    exp_in: int = 60,
    nbf_in: int = -1,
    **overrides: Any,
) -> str:
    """A session token as App Bridge sends it, signed HS256; ``overrides`` replace or (None) drop claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": aud,
        "sub": "42",
        "exp": now + exp_in,
        "nbf": now + nbf_in,
        "iat": now + nbf_in,
        "jti": str(uuid.uuid4()),
        "sid": "f8912129-1af6-4cad-9ca3-76b0f7621087",
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


def verify(token: str) -> str:
    return verify_session_token(token, api_key=API_KEY, secrets=(SECRET, PREVIOUS_SECRET))


def test_a_valid_token_names_its_shop() -> None:
    assert verify(make_session_token()) == "demo.myshopify.com"


def test_a_token_signed_with_the_previous_secret_is_accepted_during_a_rotation() -> None:
    assert verify(make_session_token(secret=PREVIOUS_SECRET)) == "demo.myshopify.com"
    with pytest.raises(SessionTokenError, match="signature"):
        verify_session_token(make_session_token(secret=PREVIOUS_SECRET), api_key=API_KEY, secrets=(SECRET,))


@pytest.mark.parametrize("aud", ["another-app", "", ["another-app"], [API_KEY, "another-app"]])
def test_another_audience_is_refused(aud: Any) -> None:
    with pytest.raises(SessionTokenError, match="aud"):
        verify(make_session_token(aud=aud))


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(SessionTokenError, match="signature"):
        verify(make_session_token(secret="shpss_someone_elses_secret_0123456789ab"))


def test_expired_beyond_the_leeway_is_refused() -> None:
    with pytest.raises(SessionTokenError, match="expired"):
        verify(make_session_token(exp_in=-30, nbf_in=-90))


def test_expired_within_the_leeway_is_accepted() -> None:
    assert verify(make_session_token(exp_in=-5, nbf_in=-65)) == "demo.myshopify.com"


def test_not_before_within_the_leeway_is_accepted_beyond_it_refused() -> None:
    # App Bridge often sends an nbf a few seconds in the future.
    assert verify(make_session_token(nbf_in=5)) == "demo.myshopify.com"
    with pytest.raises(SessionTokenError, match="not valid yet"):
        verify(make_session_token(nbf_in=30, exp_in=90))


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "https://demo.myshopify.com/admin",
        "dest": "https://demo.myshopify.com",
        "aud": API_KEY,
        "exp": now + 60,
        "nbf": now - 1,
    }


def test_alg_none_is_refused() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")
    with pytest.raises(SessionTokenError, match="HS256"):
        verify(token)


def test_rs256_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), key, algorithm="RS256")
    with pytest.raises(SessionTokenError, match="HS256"):
        verify(token)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_hs512_with_the_right_secret_is_refused() -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(SessionTokenError, match="HS256"):
        verify(token)


@pytest.mark.parametrize(
    "dest",
    [
        "https://evil.com",
        "https://demo.myshopify.com.evil.com",
        "https://demo.myshopify.com@evil.com",
        "https://demo.myshopify.com/",
        "https://demo.myshopify.com:8443",
        "http://demo.myshopify.com",
        "demo.myshopify.com",
        "https://DEMO.myshopify.com",
        "https://-demo.myshopify.com",
        42,
    ],
)
def test_dest_must_be_exactly_a_myshopify_origin(dest: Any) -> None:
    with pytest.raises(SessionTokenError, match="dest"):
        verify(make_session_token(dest=dest, iss=f"{dest}/admin"))


@pytest.mark.parametrize(
    "iss",
    [
        "https://other.myshopify.com/admin",
        "https://demo.myshopify.com",
        "https://demo.myshopify.com/admin/",
        "https://evil.com/admin",
    ],
)
def test_iss_must_be_the_admin_of_dest(iss: str) -> None:
    with pytest.raises(SessionTokenError, match="issuer"):
        verify(make_session_token(iss=iss))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iss", "dest", "aud"])
def test_required_claims(claim: str) -> None:
    with pytest.raises(SessionTokenError, match=claim if claim != "aud" else "aud|audience"):
        verify(make_session_token(**{claim: None}))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "x" * 9000])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(SessionTokenError):
        verify(token)


def test_without_configuration_nothing_verifies() -> None:
    with pytest.raises(SessionTokenError, match="not configured"):
        verify_session_token(make_session_token(), api_key="", secrets=(SECRET,))
    with pytest.raises(SessionTokenError, match="not configured"):
        verify_session_token(make_session_token(), api_key=API_KEY, secrets=("",))
