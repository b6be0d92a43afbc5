"""What staff and customers may list of the redemption service's records, in one place: the attempts' audit log,
the lockouts in force, and codes. The router asks here and runs no queries of its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption.models import Attempt, Code, Lockout
from shared.auth import Principal, Role
from shared.tenancy import store_conditions


async def attempts(
    session: AsyncSession, principal: Principal, *, store_id: str | None, failed: bool | None, offset: int, limit: int
) -> tuple[int, Sequence[Attempt]]:
    """Every attempt in the caller's merchant and stores (a store, failed ones only, if asked), newest first."""
    conditions = store_conditions(principal, Attempt.merchant_id, Attempt.store_id)
    if store_id:
        conditions.append(Attempt.store_id == store_id)
    if failed is not None:
        conditions.append(Attempt.failed.is_(failed))
    total = int(await session.scalar(select(func.count()).select_from(Attempt).where(*conditions)) or 0)
    rows = await session.scalars(
        select(Attempt).where(*conditions).order_by(Attempt.id.desc()).offset(offset).limit(limit)
    )
    return total, rows.all()


async def lockouts(session: AsyncSession, now: datetime) -> Sequence[Lockout]:
    """The scopes locked at `now`."""
    return (await session.scalars(select(Lockout).where(Lockout.locked_until > now))).all()


async def codes(
    session: AsyncSession, principal: Principal, *, order_id: str | None, status: str | None, offset: int, limit: int
) -> tuple[int, Sequence[Code]]:
    """A customer's own codes (a tracking link's principal: its order's only), or those of the caller's merchant and
    stores, newest first."""
    if principal.role is Role.customer:
        conditions = [Code.customer_id == principal.sub]
    else:
        conditions = store_conditions(principal, Code.merchant_id, Code.store_id)
    if principal.order_id is not None:
        conditions.append(Code.order_id == principal.order_id)
    if order_id:
        conditions.append(Code.order_id == order_id)
    if status:
        conditions.append(Code.status == status)
    total = int(await session.scalar(select(func.count()).select_from(Code).where(*conditions)) or 0)
    rows = await session.scalars(
        select(Code).where(*conditions).order_by(Code.issued_at.desc()).offset(offset).limit(limit)
    )
    return total, rows.all()
