"""Opaque one-time and refresh tokens: 256 random bits, handed out once; only their SHA-256 is stored, so a copy of
the database signs no one in."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
