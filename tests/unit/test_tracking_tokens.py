"""Tracking tokens: sealed, compact, tamper-evident, rotation-friendly; target URLs only http(s)."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.contacts.normalize import FieldError
from app.crypto import Keyring
from app.tracking import agents
from app.tracking.tokens import InvalidTokenError
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import open_token
from app.tracking.tokens import seal
from app.tracking.tokens import validate_target_url

pytestmark = pytest.mark.nodb

OLD, NEW = "old-secret-key-0123456789", "new-secret-key-0123456789"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def link(**overrides: object) -> TrackingLink:
    values: dict[str, object] = {
        "shop_id": 4242,
        "channel": "email",
        "message_id": "2026-12-holiday-sale-a",
        "issued_at": NOW,
        "email": "ann.lee@example.com",
    }
    values.update(overrides)
    return TrackingLink(**values)  # type: ignore[arg-type]


def test_a_token_opens_to_what_was_sealed_and_reveals_nothing() -> None:
    keyring = Keyring(NEW)
    original = link(first_name="Ann", last_name="Lee", phone="+14155552671", url="https://shop.example/p")
    token = seal(keyring, original)
    assert open_token(keyring, token) == original
    for secret in ("ann", "lee", "example", "4155552671", "holiday", "shop"):
        assert secret not in token.lower()
    assert seal(keyring, original) != token  # a fresh nonce every time: tokens cannot be linked


def test_an_email_recipient_with_a_message_id_is_under_200_characters() -> None:
    token = seal(Keyring(NEW), link(email="firstname.lastname@some-company.example.com"))
    assert len(token) < 200
    assert set(token) <= set(ALPHABET)  # URL-safe as it is


def test_every_changed_character_is_refused() -> None:
    keyring = Keyring(NEW)
    token = seal(keyring, link())
    for index, char in enumerate(token):
        for replacement in {
            ALPHABET[(ALPHABET.index(char) + 1) % 64],
            ALPHABET[(ALPHABET.index(char) + 32) % 64],
        }:
            tampered = token[:index] + replacement + token[index + 1 :]
            with pytest.raises(InvalidTokenError):
                open_token(keyring, tampered)


def test_truncated_extended_and_garbage_tokens_are_refused() -> None:
    keyring = Keyring(NEW)
    token = seal(keyring, link())
    for length in range(len(token)):
        with pytest.raises(InvalidTokenError):
            open_token(keyring, token[:length])
    for bad in (token + "A", token + "=", "!" + token, token.replace("-", "+"), "x" * 5000, "", "%00"):
        if bad == token:
            continue
        with pytest.raises(InvalidTokenError):
            open_token(keyring, bad)


def test_tokens_sealed_with_the_previous_key_still_open_after_rotation() -> None:
    old_token = seal(Keyring(OLD), link())
    rotated = Keyring(NEW, (OLD,))
    assert open_token(rotated, old_token) == link()
    assert open_token(Keyring(NEW), seal(rotated, link())) == link()  # new tokens use the new key
    with pytest.raises(InvalidTokenError):
        open_token(Keyring(NEW), old_token)  # the old key retired: refused


def test_another_purpose_does_not_open_as_a_tracking_token() -> None:
    keyring = Keyring(NEW)
    with pytest.raises(InvalidTokenError):
        open_token(keyring, keyring.seal("platform-token", b"\x01\x01\x01\x00"))


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=80
)


@settings(max_examples=200, deadline=None)
@given(
    shop_id=st.integers(min_value=1, max_value=2**62),
    channel=st.sampled_from(["email", "sms"]),
    email=st.none() | st.emails(),
    phone=st.none() | st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    first_name=st.none() | texts,
    last_name=st.none() | texts,
    message_id=texts,
    url=st.none() | st.from_regex(r"https?://[a-z0-9.-]{1,30}/[a-zA-Z0-9/?=&%._~-]{0,60}", fullmatch=True),
    seconds=st.integers(min_value=0, max_value=2**33),
)
def test_any_recipient_round_trips(
    shop_id: int,
    channel: str,
    email: str | None,
    phone: str | None,
    first_name: str | None,
    last_name: str | None,
    message_id: str,
    url: str | None,
    seconds: int,
) -> None:
    original = TrackingLink(
        shop_id=shop_id,
        channel=channel,
        message_id=message_id,
        issued_at=datetime.fromtimestamp(seconds, UTC),
        email=email,
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        url=url,
    )
    assert open_token(Keyring(NEW), seal(Keyring(NEW), original)) == original


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "//evil.example",
        "/relative",
        "http:/evil.example",
        "http:\\\\evil.example",
        "https://evil.example /x",
        "ftp://files.example",
        "https://",
        "https://a.example:99999/",
        "",
        "https://a.example/\r\nSet-Cookie: x=1",
    ],
)
def test_only_absolute_http_urls_are_targets(url: str) -> None:
    with pytest.raises(FieldError):
        validate_target_url(url)


def test_targets_become_the_ascii_a_location_header_carries() -> None:
    assert validate_target_url(" https://shop.example/a?b=1#c ") == "https://shop.example/a?b=1#c"
    assert validate_target_url("https://exämple.com/ü") == "https://xn--exmple-cua.com/%C3%BC"


@pytest.mark.parametrize(
    ("user_agent", "address", "expected"),
    [
        ("Mozilla/5.0", "17.58.1.1", (agents.APPLE_MPP, True)),
        ("Mozilla/5.0", "203.0.113.9", (agents.APPLE_MPP, True)),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "66.249.1.1",
            (agents.GOOGLE_IMAGE_PROXY, True),
        ),
        (
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            None,
            (agents.YAHOO_PROXY, True),
        ),
        ("python-requests/2.32", "198.51.100.1", (agents.BOT, True)),
        ("", "198.51.100.1", (agents.BOT, True)),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)",
            "198.51.100.1",
            (agents.HUMAN, False),
        ),
    ],
)
def test_user_agents_are_classified(user_agent: str, address: str | None, expected: tuple[str, bool]) -> None:
    assert agents.classify(user_agent, address) == expected
