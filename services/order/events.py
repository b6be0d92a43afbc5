"""The events the order service publishes (topic `order.events`, key = order id) and what each carries.

Every lifecycle event carries the whole order as consumers need it (`OrderSnapshot`: store and its dispatch
settings, mode, addresses, contact, items, amounts), so no consumer has to call back for details:
`order.placed/paid/accepted/rejected/ready/shipped/cancelled/completed/refunded/reopened/reviewed.v1`, and
`order.refund_failed.v1` when a refund cannot be made (the provider refused it, or nothing is left to refund). Some
add what only they know (the transaction, the cancellation's reason and refund, the review); both refund events
carry `refund` (`out_refund_no`, `cause`, `amount_fen`, and `error` when it failed), so a service that asked for
the refund (after-sales: cause `aftersales:<case>[#attempt]`) settles on its outcome. `PUBLISHED` is the
contract: `publish` builds the event's model, so no field outside it can be sent.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.order.models import CustomerOrder
from shared.clock import Clock
from shared.events.contracts import EventPayload, Timestamp
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
REFUND_FAILED = "order.refund_failed.v1"
REOPENED = "order.reopened.v1"
REVIEWED = "order.reviewed.v1"


class OrderStore(EventPayload):
    id: str
    name: str
    phone: str
    address: str
    lat: float = Field(description="Latitude, GCJ-02")
    lng: float = Field(description="Longitude, GCJ-02")
    prep_minutes: int


class StoreDispatch(EventPayload):
    """How the store has its deliveries dispatched: when (`on_accept` | `on_ready`) and by which strategy."""

    trigger: str
    strategy: dict[str, Any]


class OrderAddress(EventPayload):
    text: str
    lat: float = Field(description="Latitude, GCJ-02")
    lng: float = Field(description="Longitude, GCJ-02")


class OrderContact(EventPayload):
    name: str
    phone: str


class OrderItem(EventPayload):
    sku_id: str
    product_id: str
    name: str
    price_fen: int
    quantity: int


class OrderAmounts(EventPayload):
    items_fen: int
    delivery_fee_fen: int
    total_fen: int
    refunded_fen: int


class OrderSnapshot(EventPayload):
    """The order as every lifecycle event carries it."""

    order_id: str
    status: str
    fulfilment_mode: str = Field(description="`delivery`, `pickup` or `express`")
    customer_id: str
    merchant_id: str
    store: OrderStore
    dispatch: StoreDispatch
    address: OrderAddress | None = Field(description="None for self-pickup")
    contact: OrderContact
    note: str
    distance_m: int | None
    items: list[OrderItem]
    amounts: OrderAmounts
    placed_at: Timestamp
    paid_at: Timestamp | None
    accepted_at: Timestamp | None


class OrderPaid(OrderSnapshot):
    transaction_id: str


class OrderRejected(OrderSnapshot):
    reason: str


class OrderShipped(OrderSnapshot):
    carrier: str
    tracking_no: str


class OrderCancelled(OrderSnapshot):
    reason: str | None
    cancelled_by: str = Field(
        description="The action: customer_cancel, merchant_cancel, reject, accept_timeout, expire_unpaid ..."
    )
    refund_fen: int = Field(description="The refund requested with the cancellation (0 if unpaid)")


class OrderCompleted(OrderSnapshot):
    completed_by: str = Field(
        description="The action: confirm_receipt, pickup_redeemed, finish_redeemed, auto_complete"
    )


class RefundFacts(EventPayload):
    out_refund_no: str
    cause: str
    amount_fen: int


class OrderRefunded(OrderSnapshot):
    """A refund settled; `status` is `refunded` once the whole order is."""

    refund: RefundFacts


class RefundFailure(EventPayload):
    out_refund_no: str | None = Field(description="None when no refund was staged (nothing was left to refund)")
    cause: str
    amount_fen: int
    error: str


class OrderRefundFailed(OrderSnapshot):
    """A refund asked for (its `cause` names who asked) that was not made."""

    refund: RefundFailure


class OrderReopened(OrderSnapshot):
    reason: str


class OrderReviewed(OrderSnapshot):
    store_rating: int
    rider_rating: int | None
    rider: dict[str, Any] | None = Field(description="The rider as the delivery reported them")


PUBLISHED: dict[str, type[EventPayload]] = {
    PLACED: OrderSnapshot,
    PAID: OrderPaid,
    ACCEPTED: OrderSnapshot,
    REJECTED: OrderRejected,
    READY: OrderSnapshot,
    SHIPPED: OrderShipped,
    CANCELLED: OrderCancelled,
    COMPLETED: OrderCompleted,
    REFUNDED: OrderRefunded,
    REFUND_FAILED: OrderRefundFailed,
    REOPENED: OrderReopened,
    REVIEWED: OrderReviewed,
}


# What an event's snapshot carries besides the order's own row: its store's facts and its lines, in one statement
# (a store's row and the lines had been two round trips for every event).
_SNAPSHOT_FACTS = text(
    "SELECT s.id, s.name, s.phone, s.address, s.lat, s.lng, s.prep_minutes, s.dispatch_trigger, s.dispatch_strategy,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('sku_id', l.sku_id, 'product_id', l.product_id, 'name', l.name,"
    " 'price_fen', l.price_fen, 'quantity', l.quantity) ORDER BY l.id), '[]') FROM order_line l"
    " WHERE l.order_id = :order_id) AS items"
    " FROM store s WHERE s.id = :store_id"
).columns(dispatch_strategy=JSONB, items=JSONB)


async def order_snapshot(session: AsyncSession, order: CustomerOrder) -> dict[str, Any]:
    await session.flush()  # the order's new lines, as the ORM's own autoflush would (a text statement flushes none)
    facts = (await session.execute(_SNAPSHOT_FACTS, {"order_id": order.id, "store_id": order.store_id})).one()
    return {
        "order_id": order.id,
        "status": order.status,
        "fulfilment_mode": order.fulfilment_mode,
        "customer_id": order.customer_id,
        "merchant_id": order.merchant_id,
        "store": {
            "id": facts.id,
            "name": facts.name,
            "phone": facts.phone,
            "address": facts.address,
            "lat": facts.lat,
            "lng": facts.lng,
            "prep_minutes": facts.prep_minutes,
        },
        "dispatch": {"trigger": facts.dispatch_trigger, "strategy": facts.dispatch_strategy},
        "address": order.address,
        "contact": order.contact,
        "note": order.note,
        "distance_m": order.distance_m,
        "items": facts.items,
        "amounts": {
            "items_fen": order.items_fen,
            "delivery_fee_fen": order.delivery_fee_fen,
            "total_fen": order.total_fen,
            "refunded_fen": order.refunded_fen,
        },
        "placed_at": order.placed_at,
        "paid_at": order.paid_at,
        "accepted_at": order.accepted_at,
    }


async def publish(session: AsyncSession, clock: Clock, order: CustomerOrder, event_type: str, **extra: Any) -> None:
    """Stages the event in the outbox of the caller's transaction: the order's snapshot and `extra`, as the event's
    model (refusing a field it lacks)."""
    payload = PUBLISHED[event_type].model_validate(await order_snapshot(session, order) | extra)
    data = payload.model_dump(mode="json")
    await add_event(session, new_event(event_type, source=SOURCE, subject=order.id, data=data, clock=clock))
