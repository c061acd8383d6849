"""Sealing and keyed hashes: tamper-evident, purpose-bound, and rotation-friendly."""

from __future__ import annotations

import pytest

from app.crypto import InvalidSealError
from app.crypto import Keyring
from app.crypto import b64decode
from app.crypto import b64encode

pytestmark = pytest.mark.nodb

OLD, NEW = "old-secret-key-0123456789", "new-secret-key-0123456789"


def test_sealed_values_open_and_reveal_nothing() -> None:
    keyring = Keyring(NEW)
    token = keyring.seal_text("platform-token", "shpat_secret")
    assert "shpat" not in token
    assert keyring.open_text("platform-token", token) == "shpat_secret"
    assert keyring.seal_text("platform-token", "shpat_secret") != token  # fresh nonce each time


def test_a_changed_byte_or_another_purpose_is_refused() -> None:
    keyring = Keyring(NEW)
    raw = bytearray(b64decode(keyring.seal_text("a", "value")))
    for index in range(len(raw)):
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        with pytest.raises(InvalidSealError):
            keyring.open("a", b64encode(bytes(tampered)))
    with pytest.raises(InvalidSealError):
        keyring.open("b", b64encode(bytes(raw)))
    with pytest.raises(InvalidSealError):
        keyring.open("a", "short")


def test_rotation_opens_old_seals_and_finds_old_hashes() -> None:
    old = Keyring(OLD)
    rotated = Keyring(NEW, (OLD,))
    assert rotated.open_text("p", old.seal_text("p", "kept")) == "kept"
    assert old.digest("s", "email:a@example.com") in rotated.digests("s", "email:a@example.com")
    assert rotated.digest("s", "x") != old.digest("s", "x")
    with pytest.raises(InvalidSealError):
        Keyring(NEW).open_text("p", old.seal_text("p", "gone"))
