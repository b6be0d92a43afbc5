"""Sign-in, refresh and sign-out: a short-lived access token (the same claims and key as every Songda token) and a
refresh token that rotates on each use. The refresh tokens of one sign-in form a family; presenting one that was
already rotated means two parties hold it (one stole it), so the whole family is revoked and both must sign in
again. Disabling an account or resetting its password revokes all its families."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import TokenIssuer
from gateway.identity.errors import RefreshRefused, SignInFailed
from gateway.identity.models import RefreshToken, StaffAccount
from gateway.identity.opaque import digest, new_token
from gateway.identity.passwords import Passwords
from gateway.identity.schemas import SignIn, StaffTokenRead
from gateway.identity.throttle import forgive, record_failure, seconds_refused, sign_in_keys
from shared.auth import Principal, Role
from shared.errors import Refused, TooManyRequests


@dataclass(frozen=True)
class SessionPolicy:
    access_ttl_seconds: int
    refresh_ttl: timedelta
    throttle_window: timedelta
    failures_per_account: int
    failures_per_address: int


def principal_of(account: StaffAccount) -> Principal:
    return Principal(
        sub=str(account.id), role=Role(account.role), merchant_id=account.merchant_id, store_ids=account.store_ids
    )


async def sign_in(
    session: AsyncSession,
    passwords: Passwords,
    issuer: TokenIssuer,
    policy: SessionPolicy,
    body: SignIn,
    address: str,
    now: datetime,
) -> StaffTokenRead:
    keys = sign_in_keys(
        body.login, address, per_account=policy.failures_per_account, per_address=policy.failures_per_address
    )
    wait = await seconds_refused(session, keys, now, policy.throttle_window)
    if wait is not None:
        raise TooManyRequests(retry_after=wait, detail="Too many failed sign-ins; try again later")
    account = await session.scalar(select(StaffAccount).where(StaffAccount.login == body.login))
    stored = account.password_hash if account else None
    if account is None or not await passwords.verify(stored, body.password):
        await record_failure(session, keys, now, policy.throttle_window)
        raise Refused(SignInFailed())  # the failure counts (committed) though the answer is an error
    await forgive(session, keys[0])
    if account.disabled_at is not None:
        raise Refused(SignInFailed("This account is disabled"))
    if stored and passwords.outdated(stored):
        account.password_hash = await passwords.hash(body.password)
    # Expired refresh tokens of the account's earlier sign-ins are of no more use, not even to detect reuse.
    await session.execute(
        delete(RefreshToken).where(RefreshToken.account_id == account.id, RefreshToken.expires_at <= now)
    )
    return _issue(session, issuer, policy, account, uuid.uuid4(), now)


async def refresh(
    session: AsyncSession, issuer: TokenIssuer, policy: SessionPolicy, token: str, now: datetime
) -> StaffTokenRead:
    hashed = digest(token)
    rotated = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == hashed,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(rotated_at=now)
        .returning(RefreshToken.family_id, RefreshToken.account_id)
    )
    row = rotated.one_or_none()
    if row is None:
        known = await session.get(RefreshToken, hashed)
        if known is not None and known.rotated_at is not None and known.revoked_at is None:
            await revoke_family(session, known.family_id, now)
            raise Refused(RefreshRefused("This refresh token was used before: its sign-in is revoked everywhere"))
        raise RefreshRefused()
    family_id, account_id = row
    account = await session.get(StaffAccount, account_id)
    if account is None or account.disabled_at is not None:
        await revoke_family(session, family_id, now)
        raise Refused(RefreshRefused("This account is disabled"))
    await session.execute(
        delete(RefreshToken).where(RefreshToken.family_id == family_id, RefreshToken.expires_at <= now)
    )
    return _issue(session, issuer, policy, account, family_id, now)


async def sign_out(session: AsyncSession, token: str, now: datetime) -> None:
    """Revokes the sign-in the refresh token belongs to; an unknown token has nothing to revoke."""
    known = await session.get(RefreshToken, digest(token))
    if known is not None:
        await revoke_family(session, known.family_id, now)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_account(session: AsyncSession, account_id: uuid.UUID, now: datetime) -> None:
    """Every sign-in of the account: its refresh tokens stop working at once (its access tokens at their expiry)."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.account_id == account_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _issue(
    session: AsyncSession,
    issuer: TokenIssuer,
    policy: SessionPolicy,
    account: StaffAccount,
    family_id: uuid.UUID,
    now: datetime,
) -> StaffTokenRead:
    token = new_token()
    session.add(
        RefreshToken(
            token_hash=digest(token),
            family_id=family_id,
            account_id=account.id,
            issued_at=now,
            expires_at=now + policy.refresh_ttl,
        )
    )
    principal = principal_of(account)
    return StaffTokenRead(
        access_token=issuer.issue(principal, policy.access_ttl_seconds),
        expires_in=policy.access_ttl_seconds,
        role=principal.role,
        sub=principal.sub,
        refresh_token=token,
        refresh_expires_in=int(policy.refresh_ttl.total_seconds()),
        merchant_id=principal.merchant_id,
        store_ids=principal.store_ids,
    )
