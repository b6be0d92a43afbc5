"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile). Hashing costs tens of milliseconds of
CPU and 64 MiB, so it runs in a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    def __init__(self) -> None:
        self.hasher = PasswordHasher(type=Type.ID)
        # Checked against when the login is unknown or has no password yet, so those answers take as long as a
        # wrong password (no telling which logins exist by timing).
        self._stand_in = self.hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        try:
            matched = await asyncio.to_thread(self.hasher.verify, stored or self._stand_in, password)
        except (VerificationError, InvalidHashError):
            return False
        return matched and stored is not None

    def outdated(self, stored: str) -> bool:
        """The hash was made with weaker parameters than today's: rehash it at the next successful sign-in."""
        return self.hasher.check_needs_rehash(stored)
