"""Keys derived from ``SECRET_KEY``: sealing (AES-GCM) and keyed hashes (HMAC-SHA256), with rotation.

Each purpose ("platform-token", "tracking", "suppression", …) gets its own key, derived with HKDF, so a
value sealed for one purpose never opens as another. ``SECRET_KEY_FALLBACKS`` lists previous keys: what
they sealed still opens, and keyed hashes are looked up under every key, while everything new uses the
current one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12


class InvalidSealError(ValueError):
    """A sealed value was tampered with, truncated, or sealed with a key we no longer have."""


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise InvalidSealError("not base64url") from None


@cache
def _derive(secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"popsync", info=purpose.encode()).derive(
        secret.encode()
    )


class Keyring:
    def __init__(self, secret_key: str, fallbacks: tuple[str, ...] = ()) -> None:
        self._secrets = (secret_key, *fallbacks)

    def seal(self, purpose: str, plaintext: bytes) -> str:
        """Encrypt and authenticate ``plaintext``: a compact URL-safe string."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(_derive(self._secrets[0], purpose)).encrypt(nonce, plaintext, purpose.encode())
        return b64encode(_VERSION + nonce + sealed)

    def open(self, purpose: str, token: str) -> bytes:
        raw = b64decode(token)
        if len(raw) < 1 + _NONCE_BYTES + 16 or raw[:1] != _VERSION:
            raise InvalidSealError("malformed")
        nonce, sealed = raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
        for secret in self._secrets:
            try:
                return AESGCM(_derive(secret, purpose)).decrypt(nonce, sealed, purpose.encode())
            except InvalidTag:
                continue
        raise InvalidSealError("not sealed by any key we hold")

    def seal_text(self, purpose: str, text: str) -> str:
        return self.seal(purpose, text.encode())

    def open_text(self, purpose: str, token: str) -> str:
        return self.open(purpose, token).decode()

    def digest(self, purpose: str, value: str) -> str:
        """The keyed hash of ``value`` under the current key."""
        return hmac.new(_derive(self._secrets[0], purpose), value.encode(), hashlib.sha256).hexdigest()

    def digests(self, purpose: str, value: str) -> list[str]:
        """The keyed hashes of ``value`` under every key held, current first (for look-ups)."""
        return [
            hmac.new(_derive(secret, purpose), value.encode(), hashlib.sha256).hexdigest()
            for secret in self._secrets
        ]
