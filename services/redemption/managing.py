"""Managing codes: who may see and touch one (its customer, its merchant's staff at its stores, ops), and freezing,
unfreezing, revoking and reissuing it (a stolen code voided, a new number and QR secret taking its uses)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import events
from services.redemption.errors import CodeNotFound
from services.redemption.issuing import LIVE, issue_code
from services.redemption.models import Code
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Conflict, Forbidden
from shared.tenancy import covers_store
from shared.vault import Vault


def may_manage(principal: Principal, code: Code) -> bool:
    """The owner customer, the code's merchant staff (its listed stores, if the token lists any), or ops; a tracking
    link's principal only its order's codes."""
    if principal.order_id is not None and code.order_id != principal.order_id:
        return False
    if principal.role is Role.customer:
        return code.customer_id == principal.sub
    if principal.role is Role.rider:
        return False
    return covers_store(principal, code.merchant_id, code.store_id)


async def visible_code(session: AsyncSession, principal: Principal, code_id: uuid.UUID, *, lock: bool = False) -> Code:
    stmt = select(Code).where(Code.id == code_id)
    code = await session.scalar(stmt.with_for_update() if lock else stmt)
    if code is None or not may_manage(principal, code):
        raise CodeNotFound(f"No code {code_id}")
    return code


async def freeze(session: AsyncSession, principal: Principal, code_id: uuid.UUID, reason: str, clock: Clock) -> Code:
    code = await visible_code(session, principal, code_id, lock=True)
    if code.status != "active":
        raise Conflict(f"Only an active code can be frozen; this one is {code.status}")
    code.status, code.status_reason, code.updated_at = "frozen", reason or "reported stolen", clock.now()
    await session.flush()
    return code


async def unfreeze(session: AsyncSession, principal: Principal, code_id: uuid.UUID, clock: Clock) -> Code:
    code = await visible_code(session, principal, code_id, lock=True)
    if code.status != "frozen":
        raise Conflict(f"The code is {code.status}, not frozen")
    code.status, code.status_reason, code.updated_at = "active", None, clock.now()
    await session.flush()
    return code


async def revoke(session: AsyncSession, principal: Principal, code_id: uuid.UUID, reason: str, clock: Clock) -> Code:
    code = await visible_code(session, principal, code_id, lock=True)
    if principal.role is Role.customer:
        raise Forbidden("Customers freeze or reissue their codes; revoking is for the merchant")
    if code.status not in LIVE:
        raise Conflict(f"The code is {code.status}")
    code.status, code.status_reason, code.updated_at = "revoked", reason or "revoked", clock.now()
    await session.flush()
    await events.publish(session, clock, code, events.REVOKED, reason=code.status_reason)
    return code


async def reissue(session: AsyncSession, principal: Principal, code_id: uuid.UUID, clock: Clock, vault: Vault) -> Code:
    """A stolen code is voided and a new one (new number, new QR secret) takes its remaining uses."""
    old = await visible_code(session, principal, code_id, lock=True)
    if old.status not in LIVE:
        raise Conflict(f"The code is {old.status}; only a live code can be reissued")
    old.status, old.status_reason, old.updated_at = "revoked", "reissued", clock.now()
    await session.flush()
    await events.publish(session, clock, old, events.REVOKED, reason="reissued")
    new = await issue_code(
        session,
        clock,
        vault,
        kind=old.kind,
        merchant_id=old.merchant_id,
        store_id=old.store_id,
        customer_id=old.customer_id,
        title=old.title,
        summary=old.summary,
        uses=old.uses_left,
        valid_from=old.valid_from,
        valid_until=old.valid_until,
        order_id=old.order_id,
        replaces=old.id,
    )
    new.uses_total = old.uses_total
    new.uses_left = old.uses_left
    await session.flush()
    return new
