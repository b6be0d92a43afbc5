"""Events the dispatch service publishes on `dispatch.events`, keyed by the order id:
`delivery.created/rider_assigned/rider_at_store/picked_up/delivering/delivered/exception/cancelled/returned.v1`,
and `delivery.rider_unassigned.v1` when a rider withdraws. Each carries the delivery, its carrier and waybill, the
rider, the fees (quote, tip, cancel fees) and the reason; `status` tells a pickup failure or a failed dispatch
apart from a cancellation in `delivery.cancelled.v1`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.models import Delivery
from shared.clock import Clock
from shared.events.envelope import new_event
from shared.events.outbox import add_event

SOURCE = "dispatch"


def event_type(name: str) -> str:
    return f"delivery.{name}.v1"


async def publish(session: AsyncSession, clock: Clock, delivery: Delivery, name: str, **extra: Any) -> None:
    data = {
        "delivery_id": str(delivery.id),
        "order_id": delivery.order_id,
        "merchant_id": delivery.merchant_id,
        "store_id": delivery.store_id,
        "customer_id": delivery.customer_id,
        "status": delivery.status,
        "carrier": delivery.carrier,
        "waybill_id": delivery.waybill_id,
        "rider": delivery.rider,
        "fee_fen": delivery.fee_fen,
        "tip_fen": delivery.tip_fen,
        "cancel_fee_fen": delivery.cancel_fee_fen,
        "reason": delivery.reason,
        "eta": delivery.eta_at.isoformat() if delivery.eta_at else None,
        **extra,
    }
    event = new_event(event_type(name), source=SOURCE, subject=delivery.order_id, data=data, clock=clock)
    await add_event(session, event)
