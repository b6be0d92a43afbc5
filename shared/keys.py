"""Signing keys as PEM: making one, and the public half of one. Tokens (the gateway) and handover vouchers
(dispatch) are signed with such keys; the local stack makes them on first start."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

SigningKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def generate_signing_key() -> str:
    """A new Ed25519 private key in PEM."""
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def public_pem(key: SigningKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
