"""SHOPLINE signatures: the official SDK's vectors, and what forged, stale or odd requests get."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from app.platforms.shopline_signing import sign_get
from app.platforms.shopline_signing import sign_post
from app.platforms.shopline_signing import verify_get
from app.platforms.shopline_signing import verify_post
from app.platforms.shopline_signing import verify_webhook

pytestmark = pytest.mark.nodb

# reference/shopline.md §1.8 (shoplineos/shopline-sdk-go client/sign_test.go and oauth_test.go)
SDK_SECRET = "LDLLJJLflja2039203flaflaLLFLE"
SDK_TIMESTAMP = "21c335b3a"
REFRESH_SIGN = "cf5edab6b92d740fe54b3ce9e2723788128384a1eb5c2a5d64c9210a31185b86"
CREATE_SIGN = "4c4cf0ac52439d1308b58897f857dcba8545efb6c0e8091fba64b148218d2074"

SECRET = "app-secret-for-tests"
NOW_MS = 1_780_000_000_000


def test_post_signatures_match_the_official_sdk_vectors() -> None:
    assert sign_post("", SDK_TIMESTAMP, SDK_SECRET) == REFRESH_SIGN
    assert sign_post('{"code":"code"}', SDK_TIMESTAMP, SDK_SECRET) == CREATE_SIGN


def test_get_signature_is_sorted_params_without_sign() -> None:
    params = {"timestamp": str(NOW_MS), "handle": "demo", "appkey": "key", "code": "c0de"}
    expected = hmac.new(
        SECRET.encode(), f"appkey=key&code=c0de&handle=demo&timestamp={NOW_MS}".encode(), hashlib.sha256
    ).hexdigest()
    assert sign_get(params, SECRET) == expected
    assert sign_get({**params, "sign": "ignored"}, SECRET) == expected


def _signed(**params: str) -> dict[str, str]:
    return {**params, "sign": sign_get(params, SECRET)}


def test_a_genuine_fresh_get_request_verifies() -> None:
    params = _signed(appkey="key", handle="demo", timestamp=str(NOW_MS), lang="en")
    assert verify_get(params, SECRET, NOW_MS)
    assert verify_get(params, SECRET, NOW_MS + 599_000)
    assert verify_get(params, SECRET, NOW_MS - 599_000)


@pytest.mark.parametrize(
    "change",
    [
        {"handle": "other"},  # a signed parameter changed
        {"customField": "added"},  # a parameter added
        {"sign": "0" * 64},  # a made-up signature
        {"sign": ""},
    ],
)
def test_forged_get_requests_are_refused(change: dict[str, str]) -> None:
    params = {**_signed(appkey="key", handle="demo", timestamp=str(NOW_MS)), **change}
    assert not verify_get(params, SECRET, NOW_MS)


def test_get_requests_outside_ten_minutes_or_without_a_timestamp_are_refused() -> None:
    params = _signed(appkey="key", handle="demo", timestamp=str(NOW_MS))
    assert not verify_get(params, SECRET, NOW_MS + 600_001)
    assert not verify_get(params, SECRET, NOW_MS - 600_001)
    assert not verify_get(params, SECRET, NOW_MS + 60_000, max_skew_ms=30_000)
    assert not verify_get(_signed(appkey="key", handle="demo"), SECRET, NOW_MS)
    assert not verify_get(_signed(appkey="key", timestamp="12ab"), SECRET, NOW_MS)


def test_nothing_verifies_with_an_empty_secret() -> None:
    params = {"timestamp": str(NOW_MS)}
    params["sign"] = sign_get(params, "")
    assert not verify_get(params, "", NOW_MS)
    assert not verify_post("", str(NOW_MS), sign_post("", str(NOW_MS), ""), "", NOW_MS)
    assert not verify_webhook(b"{}", hmac.new(b"", b"{}", hashlib.sha256).hexdigest(), "")


def test_get_signed_over_still_encoded_values_verifies_with_the_raw_query() -> None:
    decoded = {"appkey": "key", "redirect": "https://app.test/cb?a=1", "timestamp": str(NOW_MS)}
    query = urlencode(decoded)
    raw = dict(part.split("=", 1) for part in query.split("&"))
    params = {**decoded, "sign": sign_get(raw, SECRET)}
    assert not verify_get(params, SECRET, NOW_MS)
    assert verify_get(params, SECRET, NOW_MS, raw_query=f"{query}&sign={params['sign']}")
    assert not verify_get(params, "another-secret", NOW_MS, raw_query=f"{query}&sign={params['sign']}")


def test_post_verification() -> None:
    body, timestamp = '{"code":"abc"}', str(NOW_MS)
    signature = sign_post(body, timestamp, SECRET)
    assert verify_post(body, timestamp, signature, SECRET, NOW_MS)
    assert not verify_post('{"code":"abd"}', timestamp, signature, SECRET, NOW_MS)
    assert not verify_post(body, timestamp, signature, SECRET, NOW_MS + 600_001)
    assert not verify_post(body, SDK_TIMESTAMP, sign_post(body, SDK_TIMESTAMP, SECRET), SECRET, NOW_MS)


def test_webhook_signature_as_hex_or_base64() -> None:
    body = b'{"id":"4200000000001","email":"ann@example.com"}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    assert verify_webhook(body, digest.hex(), SECRET)
    assert verify_webhook(body, digest.hex().upper(), SECRET)
    assert verify_webhook(body, f" {digest.hex()} ", SECRET)
    assert verify_webhook(body, base64.b64encode(digest).decode(), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "0" * 64,
        base64.b64encode(b"\0" * 32).decode(),
        "é" * 10,  # a header that is not ASCII fails, it does not raise
    ],
)
def test_forged_webhooks_are_refused(header: str) -> None:
    assert not verify_webhook(b'{"id":"1"}', header, SECRET)


def test_a_webhook_body_changed_after_signing_is_refused() -> None:
    signature = hmac.new(SECRET.encode(), b'{"id":"1"}', hashlib.sha256).hexdigest()
    assert not verify_webhook(b'{"id":"2"}', signature, SECRET)
    assert not verify_webhook(b'{"id":"1"}', signature, "another-secret")
