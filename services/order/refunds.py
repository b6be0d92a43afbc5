"""Refund requests: written in the caller's transaction, submitted to the provider by a durable timer.

A refund is a row unique per (order, cause), so a cause (a rejection, an after-sales case) refunds once however
often it is triggered; `out_refund_no` is fixed at creation, so a submission retried after a lost answer is
deduplicated by the provider. The provider call runs after the row is committed (in the `refund.submit` timer), never
inside the request that decided to refund.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.order import events
from services.order.models import CustomerOrder, Refund
from shared.clock import Clock
from shared.timers import schedule_timer

SUBMIT_TIMER = "refund.submit"


def aftersales_cause(case_id: str, attempt: int) -> str:
    """The cause of an after-sales case's refund: once per case, and once more per retry ops ask for."""
    return f"aftersales:{case_id}" if attempt <= 1 else f"aftersales:{case_id}#{attempt}"


def out_refund_no(order_id: str, cause: str) -> str:
    """Derived from (order, cause), so it is the same however often the cause is replayed (≤ 64 chars)."""
    return f"{order_id}R{hashlib.sha256(cause.encode()).hexdigest()[:12]}"


async def request_refund(
    session: AsyncSession, clock: Clock, order: CustomerOrder, *, cause: str, amount_fen: int, reason: str
) -> Refund | None:
    """Stages a refund for `cause`; returns None when this cause was refunded already (or there is nothing to
    refund). The amount is capped at what is left of the order's total."""
    already = sum(
        (
            await session.scalars(
                select(Refund.amount_fen).where(Refund.order_id == order.id, Refund.status != "failed")
            )
        ).all()
    )
    amount = min(amount_fen, order.total_fen - already)
    if amount <= 0:
        return None
    now = clock.now()
    refund_id = await session.scalar(
        insert(Refund)
        .values(
            order_id=order.id,
            out_refund_no=out_refund_no(order.id, cause),
            cause=cause,
            amount_fen=amount,
            reason=reason[:80] or cause,
            status="pending",
            attempts=0,
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_refund_order_cause")
        .returning(Refund.id)
    )
    if refund_id is None:
        return None
    refund = await session.get_one(Refund, refund_id)
    await schedule_timer(session, kind=SUBMIT_TIMER, key=refund.out_refund_no, due_at=now)
    return refund


async def refunds_of(session: AsyncSession, order_id: str) -> list[Refund]:
    return list(await session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)))


async def publish_failed(session: AsyncSession, clock: Clock, refund: Refund) -> None:
    """Publishes `order.refund_failed.v1` for a refund that cannot be made, so whoever asked for it (its cause)
    learns the outcome."""
    order = await session.get_one(CustomerOrder, refund.order_id)
    await publish_not_refunded(
        session, clock, order, cause=refund.cause, amount_fen=refund.amount_fen,
        error=refund.last_error or "failed", out_refund_no=refund.out_refund_no,
    )  # fmt: skip


async def publish_not_refunded(
    session: AsyncSession, clock: Clock, order: CustomerOrder, *, cause: str, amount_fen: int, error: str,
    out_refund_no: str | None = None,
) -> None:  # fmt: skip
    """`order.refund_failed.v1` for a refund asked for and not made (also one never staged: nothing left)."""
    refund = {"out_refund_no": out_refund_no, "cause": cause, "amount_fen": amount_fen, "error": error}
    await events.publish(session, clock, order, events.REFUND_FAILED, refund=refund)
