"""The local stack's keys, made on first start and kept in `<state dir>/keys/` (0600): a new one each start would
orphan what the old one sealed or signed (sealed carrier secrets, issued tokens, a sandbox's registered keys)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from shared.keys import generate_signing_key, public_pem
from shared.vault import new_key


def key_dir(state_dir: Path) -> Path:
    return state_dir / "keys"


def ensure_secret(path: Path, make: Callable[[], str] = generate_signing_key) -> str:
    """The secret kept at `path`, made by `make` the first time (created 0600, never over an existing file)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text()


def signing_key_file(state_dir: Path) -> Path:
    """The gateway's token signing key (Ed25519, PEM)."""
    path = key_dir(state_dir) / "jwt-signing.pem"
    ensure_secret(path)
    return path


def signing_public_key(state_dir: Path) -> str:
    """The public half of the gateway's signing key, which every service verifies tokens with."""
    key = serialization.load_pem_private_key(signing_key_file(state_dir).read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey)
    return public_pem(key)


def vault_key(state_dir: Path, service: str) -> str:
    """A service's vault key (a new one would orphan the secrets it sealed)."""
    return ensure_secret(key_dir(state_dir) / f"{service}-vault.key", new_key).strip()


def handover_key(state_dir: Path) -> tuple[str, str]:
    """Dispatch's handover-voucher key pair (private PEM, public PEM)."""
    private = ensure_secret(key_dir(state_dir) / "dispatch-handover.pem")
    key = serialization.load_pem_private_key(private.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return private, public_pem(key)


def demo_admin_password(state_dir: Path) -> str:
    """The demo merchant admin's password, made on the first start."""
    return ensure_secret(key_dir(state_dir) / "demo-admin-password", lambda: secrets.token_urlsafe(12)).strip()
