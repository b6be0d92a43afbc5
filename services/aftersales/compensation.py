"""Non-delivery compensation: a delivery that ended without reaching the customer opens a case by itself.

The customer is granted a share of the order's paid total by the tier table (settings, seed 004's tiers by
default), refunded through the order service like any case; a claim against the carrier for the same failure is
recorded apart (`carrier_claim`), so what we pay the customer and what we recover from the carrier reconcile
separately. One such case per order (a unique index), however often or in whatever order its delivery events come:
a delivery re-dispatched after a failure does not grant twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.aftersales import events
from services.aftersales.cases import CARRIER_CLAIM, CUSTOMER_COMPENSATION, REFUNDED_BY_ORDER, Cases
from services.aftersales.domain import DELIVERY_FEE_LINE, Action, CaseType, Side, State
from services.aftersales.errors import AmountTooLarge, InvalidTransition
from services.aftersales.models import AftersalesCase, Compensation, OrderView, OrderViewLine
from services.aftersales.settings import CompensationTier

SYSTEM = "system:non_delivery"
OWN_FLEET = "own_fleet"
# Ends that are the carrier's (or nobody's) doing; a cancellation carrying `by` was our own decision (the merchant
# or the order cancelled it), which the order service refunds or re-dispatches itself.
CARRIER_ENDS = frozenset({"cancelled", "returned", "failed", "pickup_failed"})


def is_non_delivery(event_type: str, status: str, by: str | None) -> bool:
    if event_type == "delivery.returned.v1":
        return True
    if status == "failed":  # no carrier and no rider, after every escalation
        return True
    return status in CARRIER_ENDS and not by


def tier(tiers: list[CompensationTier], total_fen: int) -> int:
    """The rate (percent) for an order of `total_fen`: the first tier whose bound it is below."""
    for entry in tiers:
        if entry.below_fen is None or total_fen < entry.below_fen:
            return entry.rate_percent
    return 0


async def open_non_delivery(
    session: AsyncSession, cases: Cases, view: OrderView, *, carrier: str | None, delivery_status: str,
    reason: str | None,
) -> AftersalesCase | None:  # fmt: skip
    """Opens and grants the order's non-delivery case; None when the order is refunded otherwise (cancelled,
    refunded in full) or already has one."""
    if view.paid_at is None or view.status in REFUNDED_BY_ORDER:
        return None
    existing = await session.scalar(
        select(AftersalesCase.id).where(AftersalesCase.order_id == view.order_id,
                                        AftersalesCase.type == CaseType.non_delivery.value)
    )  # fmt: skip
    if existing is not None:
        return None
    rate = tier(cases.settings.compensation_tiers, view.total_fen)
    amount = min(view.total_fen * rate // 100, await cases.refundable(session, view))
    if amount <= 0:
        return None
    lines = {
        line.sku_id: line.quantity
        for line in await session.scalars(select(OrderViewLine).where(OrderViewLine.order_id == view.order_id))
    }
    # Compensation is about the whole order: its lines are every line (and the fee), for the record.
    case = await cases._open(
        session, view, CaseType.non_delivery, lines | ({DELIVERY_FEE_LINE: 1} if view.delivery_fee_fen else {}),
        reason_code="delivery_failed", description=f"delivery {delivery_status}: {reason or ''}".strip(),
        asked_fen=amount, actor=SYSTEM,
    )  # fmt: skip
    now = cases.clock.now()
    await session.execute(
        insert(Compensation).values(
            case_id=case.id, order_id=view.order_id, kind=CUSTOMER_COMPENSATION, party=view.customer_id,
            basis_fen=view.total_fen, rate_percent=rate, amount_fen=amount, status="granted",
            reason=f"delivery {delivery_status}", created_at=now,
        ).on_conflict_do_nothing()
    )  # fmt: skip
    if carrier and carrier != OWN_FLEET:
        await session.execute(
            insert(Compensation).values(
                case_id=case.id, order_id=view.order_id, kind=CARRIER_CLAIM, party=carrier,
                basis_fen=view.total_fen, rate_percent=rate, amount_fen=amount, status="open",
                reason=f"delivery {delivery_status}: {reason or 'no reason given'}", created_at=now,
            ).on_conflict_do_nothing()
        )  # fmt: skip
    await cases.move(session, case, Action.approve, side=Side.system, actor=SYSTEM, agreed_fen=amount,
                     data={"agreed_fen": amount, "rate_percent": rate})  # fmt: skip
    await events.publish(session, cases.clock, case, events.APPROVED, actor=SYSTEM, auto=True)
    await events.publish(session, cases.clock, case, events.COMPENSATION_GRANTED, actor=SYSTEM, amount_fen=amount,
                         basis_fen=view.total_fen, rate_percent=rate)  # fmt: skip
    await cases._follow_on(session, case, State.approved, SYSTEM)
    return case


async def settle_claim(session: AsyncSession, claim: Compensation, recovered_fen: int, now: datetime) -> None:
    """Ops record what the carrier paid on a claim: recovered (in part or whole) or written off at 0; once."""
    if claim.kind != CARRIER_CLAIM or claim.status != "open":
        raise InvalidTransition("Only an open carrier claim is settled", status=claim.status)
    if recovered_fen > claim.amount_fen:
        raise AmountTooLarge(f"The claim was for {claim.amount_fen} fen")
    claim.settled_fen = recovered_fen
    claim.status = "recovered" if recovered_fen > 0 else "written_off"
    claim.settled_at = now
    await session.flush()
