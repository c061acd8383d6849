"""Tracking tokens: who a link was sent to, sealed so that only popsync can read it or make one.

A token is ``app.crypto.Keyring.seal("tracking", payload)``: AES-GCM under a key derived from ``SECRET_KEY``
with HKDF (purpose ``tracking``), a fresh 96-bit nonce, base64url without padding. It reveals nothing of the
recipient, and a changed, added or removed character is refused (the tag fails, or the text is not the one
canonical base64url spelling of its bytes). Tokens sealed under a key listed in ``SECRET_KEY_FALLBACKS``
still open, so a key can be rotated without breaking links already sent.

The payload is a compact binary record rather than JSON, so that a pixel URL for an email recipient with a
message id stays well under 200 characters::

    version (1 byte) | shop id (varint) | issued at, unix seconds (varint) | channel (1 byte)
    | email | phone | first name | last name | message id | url     (each: varint length + UTF-8)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import urlsplit

from werkzeug.urls import iri_to_uri

from app.contacts.normalize import FieldError
from app.crypto import InvalidSealError
from app.crypto import Keyring
from app.crypto import b64decode
from app.crypto import b64encode

PURPOSE = "tracking"
CHANNELS = ("email", "sms")
_FORMAT = 1
# Nothing popsync hands out is longer; refusing longer input early keeps garbage cheap to answer.
MAX_TOKEN_LENGTH = 4096
MESSAGE_ID_MAX_LENGTH = 255
URL_MAX_LENGTH = 2048
# Opens and clicks of links older than this are not recorded (a message that old says nothing about the
# recipient today); the click still redirects and the unsubscribe link works whatever its age.
MAX_AGE = timedelta(days=400)
_MAX_ROW_ID = 2**63 - 1
_MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second ``datetime`` holds
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f\\]")


class InvalidTokenError(ValueError):
    """Not a token popsync made with a key it still holds (garbage, tampered, truncated, or retired)."""


@dataclass(frozen=True)
class TrackingLink:
    """What a tracking token carries. ``email`` for the email channel, ``phone`` for SMS (either may also
    carry the other identifier); names come from the sender's list and only fill empty names (rule 6)."""

    shop_id: int
    channel: str
    message_id: str
    issued_at: datetime
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    url: str | None = None

    @property
    def identifier(self) -> str | None:
        """The identifier the channel speaks to: the email for email, the phone for SMS."""
        return self.email if self.channel == "email" else self.phone

    def without_url(self) -> TrackingLink:
        return TrackingLink(
            self.shop_id,
            self.channel,
            self.message_id,
            self.issued_at,
            self.email,
            self.phone,
            self.first_name,
            self.last_name,
        )

    def expired(self, now: datetime) -> bool:
        return now - self.issued_at > MAX_AGE


def validate_target_url(value: object, field: str = "url") -> str:
    """An absolute http(s) URL with a host, as the ASCII a ``Location`` header carries; FieldError else.

    Checked when a link is made and again before every redirect: a click only ever leads to such a URL.
    """
    if not isinstance(value, str):
        raise FieldError(field, "must be a string")
    text = value.strip()
    if not text:
        raise FieldError(field, "must not be empty")
    if _CONTROL_OR_SPACE.search(text):
        raise FieldError(field, "must not contain spaces, backslashes or control characters")
    try:
        text = iri_to_uri(text)
        parts = urlsplit(text)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise FieldError(field, "is not a valid URL") from None
    del port
    if parts.scheme not in ("http", "https"):
        raise FieldError(field, "must be an http:// or https:// URL")
    if not parts.hostname or not text.lower().startswith(f"{parts.scheme}://"):
        raise FieldError(field, "must be an absolute URL with a host")
    if len(text) > URL_MAX_LENGTH:
        raise FieldError(field, f"must be at most {URL_MAX_LENGTH} characters")
    return text


def seal(keyring: Keyring, link: TrackingLink) -> str:
    """The token for ``link``, under the current key."""
    if link.channel not in CHANNELS:
        raise ValueError(f"unknown channel {link.channel!r}")
    out = bytearray([_FORMAT])
    _put_varint(out, link.shop_id)
    _put_varint(out, int(link.issued_at.timestamp()))
    out.append(CHANNELS.index(link.channel))
    for text in (link.email, link.phone, link.first_name, link.last_name, link.message_id, link.url):
        data = (text or "").encode()
        _put_varint(out, len(data))
        out += data
    return keyring.seal(PURPOSE, bytes(out))


def open_token(keyring: Keyring, token: str) -> TrackingLink:
    """The link a token carries; InvalidTokenError for anything popsync did not seal with a key it holds."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError("not a token")
    try:
        # base64 decoding forgives stray characters and unused trailing bits; a token is only its one
        # canonical spelling, so that any changed character is refused, not just most of them.
        if b64encode(b64decode(token)) != token:
            raise InvalidTokenError("not canonical base64url")
        payload = keyring.open(PURPOSE, token)
    except InvalidSealError:
        raise InvalidTokenError("not sealed by popsync") from None
    try:
        return _decode(payload)
    except (IndexError, ValueError):
        # Authentic but unreadable: only a future format could do this. Refuse rather than guess.
        raise InvalidTokenError("unknown token format") from None


def _decode(payload: bytes) -> TrackingLink:
    if not payload or payload[0] != _FORMAT:
        raise ValueError("format")
    position = 1
    shop_id, position = _get_varint(payload, position)
    issued, position = _get_varint(payload, position)
    # popsync never seals these, but a varint may hold up to 70 bits: past a 64-bit row id or the year
    # 9999 the database or ``datetime`` would raise something else than ValueError further on.
    if shop_id > _MAX_ROW_ID or issued > _MAX_TIMESTAMP:
        raise ValueError("out of range")
    channel = CHANNELS[payload[position]]
    position += 1
    texts: list[str | None] = []
    for _ in range(6):
        length, position = _get_varint(payload, position)
        if position + length > len(payload):
            raise ValueError("truncated")
        texts.append(payload[position : position + length].decode() or None)
        position += length
    if position != len(payload):
        raise ValueError("trailing bytes")
    email, phone, first_name, last_name, message_id, url = texts
    if not message_id:
        raise ValueError("no message id")
    return TrackingLink(
        shop_id=shop_id,
        channel=channel,
        message_id=message_id,
        issued_at=datetime.fromtimestamp(issued, UTC),
        email=email,
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        url=url,
    )


def _put_varint(out: bytearray, number: int) -> None:
    if number < 0:
        raise ValueError("negative")
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _get_varint(data: bytes, position: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        byte = data[position]
        position += 1
        number |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return number, position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
