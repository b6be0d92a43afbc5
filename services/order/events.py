"""The events the order service publishes (topic `order.events`, key = order id) and what each carries.

Every lifecycle event carries the whole order as consumers need it (store and its dispatch settings, mode,
addresses, contact, items, amounts), so no consumer has to call back for details:
`order.placed/paid/accepted/rejected/ready/shipped/cancelled/completed/refunded/reopened/reviewed.v1`, and
`order.refund_failed.v1` when a refund cannot be made (the provider refused it, or nothing is left to refund); both
refund events carry `refund` (`out_refund_no`, `cause`, `amount_fen`, and `error` when it failed), so a service that
asked for the refund (after-sales: cause `aftersales:<case>[#attempt]`) settles on its outcome.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.order.models import CustomerOrder, OrderLine, Store
from shared.clock import Clock
from shared.events.envelope import new_event
from shared.events.outbox import add_event

SOURCE = "order"

PLACED = "order.placed.v1"
PAID = "order.paid.v1"
ACCEPTED = "order.accepted.v1"
REJECTED = "order.rejected.v1"
READY = "order.ready.v1"
SHIPPED = "order.shipped.v1"
CANCELLED = "order.cancelled.v1"
COMPLETED = "order.completed.v1"
REFUNDED = "order.refunded.v1"
REFUND_FAILED = "order.refund_failed.v1"
REOPENED = "order.reopened.v1"
REVIEWED = "order.reviewed.v1"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def order_snapshot(session: AsyncSession, order: CustomerOrder) -> dict[str, Any]:
    store = await session.get_one(Store, order.store_id)
    lines = (
        await session.scalars(select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id))
    ).all()
    return {
        "order_id": order.id,
        "status": order.status,
        "fulfilment_mode": order.fulfilment_mode,
        "customer_id": order.customer_id,
        "merchant_id": order.merchant_id,
        "store": {
            "id": store.id,
            "name": store.name,
            "phone": store.phone,
            "address": store.address,
            "lat": store.lat,
            "lng": store.lng,
            "prep_minutes": store.prep_minutes,
        },
        "dispatch": {"trigger": store.dispatch_trigger, "strategy": store.dispatch_strategy},
        "address": order.address,
        "contact": order.contact,
        "note": order.note,
        "distance_m": order.distance_m,
        "items": [
            {
                "sku_id": str(line.sku_id),
                "product_id": str(line.product_id),
                "name": line.name,
                "price_fen": line.price_fen,
                "quantity": line.quantity,
            }
            for line in lines
        ],
        "amounts": {
            "items_fen": order.items_fen,
            "delivery_fee_fen": order.delivery_fee_fen,
            "total_fen": order.total_fen,
            "refunded_fen": order.refunded_fen,
        },
        "placed_at": _iso(order.placed_at),
        "paid_at": _iso(order.paid_at),
        "accepted_at": _iso(order.accepted_at),
    }


async def publish(session: AsyncSession, clock: Clock, order: CustomerOrder, event_type: str, **extra: Any) -> None:
    """Stages the event in the outbox of the caller's transaction."""
    data = await order_snapshot(session, order) | extra
    await add_event(session, new_event(event_type, source=SOURCE, subject=order.id, data=data, clock=clock))
