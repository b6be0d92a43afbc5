"""Staff accounts and who manages them: ops manage every account (and appoint merchants' admins); a merchant's admin
invites its staff and riders, scopes them to stores, disables them and resets their passwords. A new account, and
one whose password was reset, gets a one-time token that sets its password."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity.errors import InvitationNotValid, LoginTaken, StaffNotFound
from gateway.identity.models import Invitation, StaffAccount
from gateway.identity.opaque import digest, new_token
from gateway.identity.passwords import Passwords
from gateway.identity.schemas import StaffInvite, StaffRead
from gateway.identity.sessions import revoke_account
from shared.auth import Principal, Role
from shared.errors import Conflict, Forbidden, ValidationFailed


def staff_read(account: StaffAccount) -> StaffRead:
    return StaffRead(
        id=account.id,
        login=account.login,
        display_name=account.display_name,
        role=account.role,
        merchant_id=account.merchant_id,
        admin=account.admin,
        store_ids=account.store_ids,
        disabled=account.disabled_at is not None,
        has_password=account.password_hash is not None,
        created_at=account.created_at,
    )


async def admin_of(session: AsyncSession, principal: Principal) -> StaffAccount | None:
    """The caller's own account when it is an enabled admin of a merchant (a token minted any other way, or for
    anyone else, manages no one)."""
    if principal.role != Role.merchant or not principal.merchant_id:
        return None
    try:
        account_id = uuid.UUID(principal.sub)
    except ValueError:
        return None
    account = await session.get(StaffAccount, account_id)
    if account is None or not account.admin or account.disabled_at is not None:
        return None
    return account if account.merchant_id == principal.merchant_id else None


async def _manager(session: AsyncSession, principal: Principal) -> StaffAccount | None:
    """None for ops; the admin's account for a merchant's admin; 403 for anyone else."""
    if principal.role == Role.ops:
        return None
    admin = await admin_of(session, principal)
    if admin is None:
        raise Forbidden("Only ops and a merchant's admin manage staff")
    return admin


def check_shape(role: str, merchant_id: str | None, admin: bool, store_ids: list[str]) -> None:
    if role == Role.ops and (merchant_id or admin or store_ids):
        raise ValidationFailed("An ops account belongs to no merchant")
    if role != Role.ops and not merchant_id:
        raise ValidationFailed("A merchant's staff or rider needs merchant_id")
    if admin and (role != Role.merchant or store_ids):
        raise ValidationFailed("A merchant's admin is merchant staff for every store")


async def invite(
    session: AsyncSession, principal: Principal, body: StaffInvite, now: datetime, ttl: timedelta
) -> tuple[StaffAccount, str, datetime]:
    manager = await _manager(session, principal)
    merchant_id = body.merchant_id
    if manager is not None:
        if body.admin or body.role == Role.ops:
            raise Forbidden("Only ops appoint admins and ops")
        if merchant_id not in (None, manager.merchant_id):
            raise Forbidden("An admin invites into its own merchant only")
        merchant_id = manager.merchant_id
    check_shape(body.role, merchant_id, body.admin, body.store_ids)
    account = await create_account(
        session,
        login=body.login,
        display_name=body.display_name,
        role=body.role,
        merchant_id=merchant_id,
        admin=body.admin,
        store_ids=body.store_ids,
        created_by=f"{principal.role}:{principal.sub}",
        now=now,
    )
    token, expires_at = issue_invitation(session, account, "invite", now, ttl)
    return account, token, expires_at


async def create_account(
    session: AsyncSession,
    *,
    login: str,
    display_name: str,
    role: str,
    merchant_id: str | None,
    admin: bool,
    store_ids: list[str],
    created_by: str,
    now: datetime,
) -> StaffAccount:
    """A new account without a password; 409 when the login is taken."""
    inserted: StaffAccount | None = await session.scalar(
        insert(StaffAccount)
        .values(
            id=uuid.uuid4(),
            login=login,
            display_name=display_name,
            role=role,
            merchant_id=merchant_id,
            admin=admin,
            store_ids=sorted(set(store_ids)),
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[StaffAccount.login])
        .returning(StaffAccount)
    )
    if inserted is None:
        raise LoginTaken()
    return inserted


def issue_invitation(
    session: AsyncSession, account: StaffAccount, purpose: str, now: datetime, ttl: timedelta
) -> tuple[str, datetime]:
    token = new_token()
    expires_at = now + ttl
    session.add(
        Invitation(token_hash=digest(token), account_id=account.id, purpose=purpose, created_at=now,
                   expires_at=expires_at)
    )  # fmt: skip
    return token, expires_at


async def visible_staff(session: AsyncSession, principal: Principal, merchant_id: str | None) -> list[StaffAccount]:
    """Ops: every account, or one merchant's; an admin: its merchant's."""
    manager = await _manager(session, principal)
    query = select(StaffAccount).order_by(StaffAccount.login)
    if manager is not None:
        if merchant_id not in (None, manager.merchant_id):
            raise Forbidden("An admin sees its own merchant's staff only")
        merchant_id = manager.merchant_id
    if merchant_id is not None:
        query = query.where(StaffAccount.merchant_id == merchant_id)
    return list((await session.scalars(query)).all())


async def managed_account(
    session: AsyncSession, principal: Principal, account_id: uuid.UUID, *, lock: bool = True
) -> StaffAccount:
    """The account, when the caller manages it: 404 for another merchant's (not even its existence is told), 403
    for an admin (or ops) account managed by an admin."""
    manager = await _manager(session, principal)
    query = select(StaffAccount).where(StaffAccount.id == account_id)
    account = await session.scalar(query.with_for_update() if lock else query)
    if account is None or (manager is not None and account.merchant_id != manager.merchant_id):
        raise StaffNotFound()
    if manager is not None and (account.admin or account.role == Role.ops):
        raise Forbidden("Only ops manage admins")
    return account


async def scope(
    session: AsyncSession, principal: Principal, account_id: uuid.UUID, store_ids: list[str], now: datetime
) -> StaffAccount:
    """New stores show in the account's next access token (at its next refresh, within minutes)."""
    account = await managed_account(session, principal, account_id)
    if account.role == Role.ops or (account.admin and store_ids):
        raise Conflict("Ops and admins act for every store")
    account.store_ids = sorted(set(store_ids))
    account.updated_at = now
    return account


async def set_disabled(
    session: AsyncSession, principal: Principal, account_id: uuid.UUID, disabled: bool, now: datetime
) -> StaffAccount:
    account = await managed_account(session, principal, account_id)
    if disabled and account.disabled_at is None:
        account.disabled_at = now
        await revoke_account(session, account.id, now)
    elif not disabled:
        account.disabled_at = None
    account.updated_at = now
    return account


async def reset_password(
    session: AsyncSession, principal: Principal, account_id: uuid.UUID, now: datetime, ttl: timedelta
) -> tuple[StaffAccount, str, datetime]:
    """The old password stops working, every sign-in is revoked, earlier invitations are void; the new token sets
    the next password."""
    account = await managed_account(session, principal, account_id)
    account.password_hash = None
    account.updated_at = now
    await revoke_account(session, account.id, now)
    await session.execute(
        update(Invitation).where(Invitation.account_id == account.id, Invitation.used_at.is_(None)).values(used_at=now)
    )
    token, expires_at = issue_invitation(session, account, "reset", now, ttl)
    return account, token, expires_at


async def set_password(
    session: AsyncSession, passwords: Passwords, token: str, password: str, now: datetime
) -> StaffAccount:
    """Spends the invitation or reset token (once) and sets the account's password."""
    used = await session.scalar(
        update(Invitation)
        .where(Invitation.token_hash == digest(token), Invitation.used_at.is_(None), Invitation.expires_at > now)
        .values(used_at=now)
        .returning(Invitation.account_id)
    )
    if used is None:
        raise InvitationNotValid()
    account = await session.get(StaffAccount, used, with_for_update=True)
    if account is None or account.disabled_at is not None:
        raise InvitationNotValid("The account is disabled")
    account.password_hash = await passwords.hash(password)
    account.updated_at = now
    return account
