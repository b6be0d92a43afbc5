"""The events the aftersales service publishes (topic `aftersales.events`, key = order id), one model each.

Every event carries the case as both sides and the order service need it; the money moves only by
`aftersales.refund_requested.v1` (the order service owns the payment and refunds it once per case and attempt),
and its outcome comes back as the order service's `order.refunded.v1` / `order.refund_failed.v1`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.aftersales.models import AftersalesCase, CaseLine
from shared.clock import Clock
from shared.events.contracts import EventPayload, Timestamp
from shared.events.envelope import new_event
from shared.events.outbox import add_event

SOURCE = "aftersales"

REQUESTED = "aftersales.requested.v1"
APPROVED = "aftersales.approved.v1"
REJECTED = "aftersales.rejected.v1"
NEGOTIATED = "aftersales.negotiated.v1"
ESCALATED = "aftersales.escalated.v1"
RULED = "aftersales.ruled.v1"
REFUND_REQUESTED = "aftersales.refund_requested.v1"
REFUNDED = "aftersales.refunded.v1"
CLOSED = "aftersales.closed.v1"
CANCELLED = "aftersales.cancelled.v1"
COMPENSATION_GRANTED = "aftersales.compensation_granted.v1"


class CaseLinePayload(EventPayload):
    sku_id: str
    quantity: int


class CasePayload(EventPayload):
    case_id: str
    order_id: str
    type: str
    state: str
    customer_id: str
    merchant_id: str
    store_id: str
    reason_code: str
    asked_fen: int
    agreed_fen: int | None
    lines: list[CaseLinePayload]
    deadline_at: Timestamp | None
    actor: str


class Requested(CasePayload):
    pass


class Approved(CasePayload):
    auto: bool


class Rejected(CasePayload):
    reject_reason_code: str


class Negotiated(CasePayload):
    proposed_fen: int
    without_return: bool


class Escalated(CasePayload):
    by_system: bool


class Ruled(CasePayload):
    outcome: str  # refund | reject
    amount_fen: int | None


class RefundRequested(CasePayload):
    """Refund `amount_fen` of the order for this case; `attempt` grows only when ops retry a failed refund, so the
    order service refunds once per (case, attempt). A `cancel_request` case also cancels the order."""

    amount_fen: int
    attempt: int
    reason: str


class Refunded(CasePayload):
    refunded_fen: int


class Closed(CasePayload):
    outcome: str  # exchanged | rejected | return_expired


class Cancelled(CasePayload):
    pass


class CompensationGranted(CasePayload):
    amount_fen: int
    basis_fen: int
    rate_percent: int


PUBLISHED: dict[str, type[EventPayload]] = {
    REQUESTED: Requested,
    APPROVED: Approved,
    REJECTED: Rejected,
    NEGOTIATED: Negotiated,
    ESCALATED: Escalated,
    RULED: Ruled,
    REFUND_REQUESTED: RefundRequested,
    REFUNDED: Refunded,
    CLOSED: Closed,
    CANCELLED: Cancelled,
    COMPENSATION_GRANTED: CompensationGranted,
}


async def publish(
    session: AsyncSession, clock: Clock, case: AftersalesCase, event_type: str, *, actor: str, **extra: Any
) -> None:
    """Stages the event in the outbox of the caller's transaction."""
    lines = (await session.scalars(select(CaseLine).where(CaseLine.case_id == case.id).order_by(CaseLine.sku_id))).all()
    model = PUBLISHED[event_type](
        case_id=case.id,
        order_id=case.order_id,
        type=case.type,
        state=case.state,
        customer_id=case.customer_id,
        merchant_id=case.merchant_id,
        store_id=case.store_id,
        reason_code=case.reason_code,
        asked_fen=case.asked_fen,
        agreed_fen=case.agreed_fen,
        lines=[CaseLinePayload(sku_id=line.sku_id, quantity=line.quantity) for line in lines],
        deadline_at=case.deadline_at,
        actor=actor,
        **extra,
    )
    event = new_event(event_type, source=SOURCE, subject=case.order_id, data=model.model_dump(mode="json"), clock=clock)
    await add_event(session, event)
