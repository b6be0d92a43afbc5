"""Issuing codes: a code's number (11 random digits and a check digit, unused) and its QR secret, sealed at rest
(shared/vault.py); the code an order's fulfilment mode needs, issued by the order event that calls for it; an
order's live codes ended with it; a code expired when its validity ends (a durable timer)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import codes, events
from services.redemption.consumed import OrderToCode
from services.redemption.models import Code
from services.redemption.settings import RedemptionSettings
from shared.clock import Clock
from shared.timers import schedule_timer
from shared.vault import Vault

EXPIRE_TIMER = "code.expire"
# A code that may still be redeemed, or will be once unfrozen.
LIVE = ("active", "frozen")


def qr_secret(vault: Vault, code: Code) -> bytes:
    """The code's TOTP key, unsealed."""
    return vault.open_bytes(code.secret_sealed, str(code.id))


# Built once: every order's code runs them.
_NUMBER_TAKEN = select(Code.id).where(Code.code == bindparam("number"))
_LIVE_ORDER_CODE = select(Code.id).where(
    Code.order_id == bindparam("order_id"), Code.kind == bindparam("kind"), Code.status.in_(LIVE)
)


async def _unused_number(session: AsyncSession) -> str:
    while True:  # 10^11 numbers: a collision is rare, and checked
        number = codes.new_code()
        if await session.scalar(_NUMBER_TAKEN, {"number": number}) is None:
            return number


async def issue_code(
    session: AsyncSession,
    clock: Clock,
    vault: Vault,
    *,
    kind: str,
    merchant_id: str,
    store_id: str,
    customer_id: str,
    title: str,
    summary: dict[str, Any],
    uses: int,
    valid_from: datetime,
    valid_until: datetime,
    order_id: str | None = None,
    replaces: uuid.UUID | None = None,
) -> Code:
    now = clock.now()
    code_id = uuid.uuid4()
    code = Code(
        id=code_id,
        code=await _unused_number(session),
        kind=kind,
        status="active",
        order_id=order_id,
        merchant_id=merchant_id,
        store_id=store_id,
        customer_id=customer_id,
        title=title,
        summary=summary,
        uses_total=uses,
        uses_left=uses,
        cycles=0,
        secret_sealed=vault.seal_bytes(codes.new_secret(), str(code_id)),
        valid_from=valid_from,
        valid_until=valid_until,
        replaces=replaces,
        issued_at=now,
        updated_at=now,
    )
    session.add(code)
    await session.flush()
    await schedule_timer(session, kind=EXPIRE_TIMER, key=str(code.id), due_at=valid_until)
    await events.publish(session, clock, code, events.ISSUED)
    return code


# The code each fulfilment mode needs, and the order event that issues it: a finish code once the order is paid
# (shown at the door; only the rider's handover redeems it, after pickup), a pickup code once the merchant accepted
# (before that, a redeemed pickup code could meet an order refunded for not being accepted).
ORDER_CODE_KINDS = {"pickup": ("pickup", "order.accepted.v1"), "delivery": ("finish", "order.paid.v1")}


def issues_code(event_type: str, order: OrderToCode) -> bool:
    """Whether `event_type` is the order event that issues the code the order's fulfilment mode needs."""
    _, issued_on = ORDER_CODE_KINDS.get(order.fulfilment_mode, (None, None))
    return issued_on == event_type


async def issue_order_codes(
    session: AsyncSession, clock: Clock, settings: RedemptionSettings, vault: Vault, event_type: str,
    order: OrderToCode,
) -> None:  # fmt: skip
    """The code the order's fulfilment mode needs, when `event_type` is the event that issues it."""
    if not issues_code(event_type, order):
        return
    kind, _ = ORDER_CODE_KINDS[order.fulfilment_mode]
    order_id = order.order_id
    live = await session.scalar(_LIVE_ORDER_CODE, {"order_id": order_id, "kind": kind})
    if live is not None:
        return
    now = clock.now()
    store = order.store
    await issue_code(
        session,
        clock,
        vault,
        kind=kind,
        merchant_id=order.merchant_id,
        store_id=store.id,
        customer_id=order.customer_id,
        title=f"{store.name} {'取餐码' if kind == 'pickup' else '收货码'}".strip(),
        summary={"items": order.items, "amounts": order.amounts, "mode": order.fulfilment_mode},
        uses=1,
        valid_from=now,
        valid_until=now + timedelta(hours=settings.order_code_valid_hours),
        order_id=order_id,
    )


async def end_order_codes(session: AsyncSession, clock: Clock, order_id: str, *, revoke: bool, reason: str) -> None:
    """An order that ended takes its live codes with it: revoked (cancelled, refunded) or expired (completed)."""
    ended = (
        await session.scalars(
            update(Code)
            .where(Code.order_id == order_id, Code.status.in_(LIVE))
            .values(status="revoked" if revoke else "expired", status_reason=reason, updated_at=clock.now())
            .returning(Code)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if revoke:
        for code in ended:
            await events.publish(session, clock, code, events.REVOKED, reason=reason)


async def expire_code(session: AsyncSession, clock: Clock, code_id: str) -> None:
    await session.execute(
        update(Code)
        .where(Code.id == uuid.UUID(code_id), Code.status.in_(LIVE), Code.valid_until <= clock.now())
        .values(status="expired", status_reason="validity ended", updated_at=clock.now())
    )
