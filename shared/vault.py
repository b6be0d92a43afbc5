"""Secrets at rest: AES-256-GCM under a key from a setting (`DISPATCH_VAULT_KEY` for carrier secrets,
`REDEMPTION_VAULT_KEY` for the codes' QR secrets), bound to the row they belong to (the row's id is the associated
data, so a sealed secret copied onto another row does not open)."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"


def new_key() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


class Vault:
    def __init__(self, key: str, setting: str) -> None:
        if not key:
            raise ValueError(f"no vault key: set {setting} (32 bytes, url-safe base64; see deploy/README.md)")
        raw = base64.urlsafe_b64decode(key)
        if len(raw) != 32:
            raise ValueError(f"{setting} must decode to 32 bytes")
        self._aead = AESGCM(raw)

    def seal_bytes(self, secret: bytes, bound_to: str) -> bytes:
        nonce = os.urandom(12)
        return VERSION + nonce + self._aead.encrypt(nonce, secret, bound_to.encode())

    def open_bytes(self, sealed: bytes, bound_to: str) -> bytes:
        if sealed[:1] != VERSION:
            raise ValueError("unknown vault format")
        return self._aead.decrypt(sealed[1:13], sealed[13:], bound_to.encode())

    def seal(self, secret: str, bound_to: str) -> bytes:
        return self.seal_bytes(secret.encode(), bound_to)

    def open(self, sealed: bytes, bound_to: str) -> str:
        return self.open_bytes(sealed, bound_to).decode()
