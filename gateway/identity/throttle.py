"""Brute-force throttling of sign-ins, per login and per client address, in the identity database so every gateway
replica counts the same failures. Each key counts failures in a fixed window that opens with its first failure;
at the limit the key is refused until the window closes (429 with Retry-After), whatever the password."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity.models import SignInThrottle


@dataclass(frozen=True)
class ThrottleKey:
    key: str
    limit: int


def sign_in_keys(login: str, address: str, *, per_account: int, per_address: int) -> list[ThrottleKey]:
    return [ThrottleKey(f"account:{login}", per_account), ThrottleKey(f"address:{address}", per_address)]


async def seconds_refused(
    session: AsyncSession, keys: list[ThrottleKey], now: datetime, window: timedelta
) -> int | None:
    """The seconds until every key is below its limit again, or None when none is at it."""
    limits = {k.key: k.limit for k in keys}
    rows = await session.execute(select(SignInThrottle).where(SignInThrottle.key.in_(limits)))
    waits = [
        (row.window_started_at + window - now).total_seconds()
        for row in rows.scalars()
        if row.failures >= limits[row.key] and row.window_started_at + window > now
    ]
    return max(1, math.ceil(max(waits))) if waits else None


async def record_failure(session: AsyncSession, keys: list[ThrottleKey], now: datetime, window: timedelta) -> None:
    """One more failure for each key; a key whose window closed starts a new one."""
    for key in keys:
        closed = SignInThrottle.window_started_at <= now - window
        statement = insert(SignInThrottle).values(key=key.key, failures=1, window_started_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[SignInThrottle.key],
            set_={
                "failures": case((closed, 1), else_=SignInThrottle.failures + 1),
                "window_started_at": case((closed, now), else_=SignInThrottle.window_started_at),
            },
        )
        await session.execute(statement)


async def forgive(session: AsyncSession, key: ThrottleKey) -> None:
    """A successful sign-in clears its login's failures (not its address's: one good password among many guesses
    from an address does not make the others innocent)."""
    await session.execute(delete(SignInThrottle).where(SignInThrottle.key == key.key))
