"""Hypothesis over the tracking-token opener (app/tracking/tokens.py): whatever reaches ``/t/o/…``,
``/t/c/…`` or ``/u/…`` — any text, bytes or other value, a real token truncated, extended or with a bit
flipped, one sealed under another key or for another purpose, even an authentic seal of bytes that are not
a link — ``open_token`` answers a ``TrackingLink`` only for what popsync sealed, and ``InvalidTokenError``
for everything else, never another exception.

tests/unit/test_tracking_tokens.py changes every character of one token and round-trips generated links;
this adds arbitrary input, bit flips of generated tokens, and authentic payloads popsync never writes.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.crypto import Keyring
from app.crypto import b64decode
from app.crypto import b64encode
from app.tracking.tokens import PURPOSE
from app.tracking.tokens import InvalidTokenError
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import open_token
from app.tracking.tokens import seal

pytestmark = pytest.mark.nodb

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None)
KEYRING = Keyring("fuzz-secret-key-0123456789abcdef", ("fuzz-previous-key-0123456789abcd",))
OTHER_KEY = Keyring("someone-elses-key-0123456789abcd")
ISSUED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

names = st.none() | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
links = st.builds(
    TrackingLink,
    shop_id=st.integers(1, 2**40),
    channel=st.sampled_from(["email", "sms"]),
    message_id=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60),
    issued_at=st.just(ISSUED),
    email=st.none() | st.emails(),
    phone=st.none() | st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    first_name=names,
    last_name=names,
    url=st.none() | st.just("https://shop.example/p?q=1"),
)


def refused(token: Any, keyring: Keyring = KEYRING) -> None:
    with pytest.raises(InvalidTokenError):
        open_token(keyring, token)


@FUZZ
@given(
    token=st.one_of(
        st.text(max_size=300),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=300),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=100),
        st.builds(
            lambda piece, times: piece * times, st.text(min_size=1, max_size=4), st.integers(1000, 5000)
        ),
    )
)
def test_any_text_is_refused_with_the_documented_error(token: str) -> None:
    refused(token)


@FUZZ
@given(
    token=st.one_of(
        st.none(), st.binary(max_size=100), st.integers(), st.floats(), st.lists(st.text(), max_size=2)
    )
)
def test_anything_that_is_not_text_is_refused(token: Any) -> None:
    refused(token)


@FUZZ
@given(link=links, data=st.data())
def test_a_truncated_extended_or_bit_flipped_token_is_refused(
    link: TrackingLink, data: st.DataObject
) -> None:
    token = seal(KEYRING, link)
    assert open_token(KEYRING, token) == link
    raw = b64decode(token)
    cut = data.draw(st.integers(0, len(token) - 1), label="cut")
    refused(token[:cut])
    refused(token + data.draw(st.text(min_size=1, max_size=8), label="suffix"))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    refused(b64encode(bytes(flipped)))
    refused(token, OTHER_KEY)


@FUZZ
@given(
    link=links, purpose=st.sampled_from(["platform-token", "admin-session", "suppression", "tracking2", ""])
)
def test_a_seal_for_another_purpose_is_refused(link: TrackingLink, purpose: str) -> None:
    real = seal(KEYRING, link)
    refused(KEYRING.seal(purpose, b64decode(real)))


def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | 0x80 if number else byte)
        if not number:
            return bytes(out)


# Authentic seals (made with popsync's own key) of payloads popsync never writes: another format byte,
# huge varints (an issue time past year 9999, a shop id past 64 bits), unknown channels, lengths running
# past the end, invalid UTF-8, trailing bytes, or plain random bytes.
payloads = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda fmt, shop, issued, channel, texts, trailing: (
            bytes([fmt])
            + varint(shop)
            + varint(issued)
            + bytes([channel])
            + b"".join(varint(length) + body for length, body in texts)
            + trailing
        ),
        fmt=st.sampled_from([1, 1, 1, 0, 2, 255]),
        shop=st.integers(0, 2**70),
        issued=st.one_of(st.integers(0, 2**34), st.integers(2**34, 2**70)),
        channel=st.sampled_from([0, 1, 1, 2, 255]),
        texts=st.lists(
            st.tuples(
                st.integers(0, 70), st.binary(max_size=40) | st.just(b"\xff\xfe") | st.just("é".encode())
            ),
            min_size=0,
            max_size=7,
        ),
        trailing=st.sampled_from([b"", b"", b"\x00", b"junk"]),
    ),
    # Well-formed records (six texts of the right lengths) with out-of-range numbers: these reach the
    # shop id and the issue time themselves.
    st.builds(
        lambda shop, issued, channel, texts: (
            b"\x01"
            + varint(shop)
            + varint(issued)
            + bytes([channel])
            + b"".join(varint(len(t)) + t for t in texts)
        ),
        shop=st.integers(0, 2**70) | st.sampled_from([2**63 - 1, 2**63, 2**64]),
        issued=st.integers(0, 2**70) | st.sampled_from([253_402_300_799, 253_402_300_800, 2**62, 2**63]),
        channel=st.sampled_from([0, 1]),
        texts=st.lists(st.text(min_size=1, max_size=10).map(str.encode), min_size=6, max_size=6),
    ),
)


@FUZZ
@given(payload=payloads)
def test_an_authentic_seal_of_anything_opens_or_is_refused_never_crashes(payload: bytes) -> None:
    token = KEYRING.seal(PURPOSE, payload)
    try:
        link = open_token(KEYRING, token)
    except InvalidTokenError:
        return
    assert isinstance(link, TrackingLink)
    assert link.message_id
    assert link.channel in ("email", "sms")
    assert 0 <= link.shop_id < 2**63  # a row id the database can look up, not an overflow
