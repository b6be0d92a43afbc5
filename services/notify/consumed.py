"""What the notify service reads of the events it consumes: one narrow view per event, only the fields it uses,
named and typed as the publishers' models have them (services/order/events.py, services/dispatch/events.py,
services/redemption/events.py, services/aftersales/events.py). tests/contracts/ checks each against the
publisher's model. Merchant webhooks forward the event's data as published, so they read no view of their own."""

from __future__ import annotations

from shared.events.contracts import EventView, Timestamp

# The events consumed, each with the view below it is read through (handlers.py says which).
ORDER_EVENTS = tuple(
    f"order.{name}.v1"
    for name in ("placed", "paid", "accepted", "ready", "shipped", "cancelled", "completed", "reopened", "reviewed",
                 "refund_failed", "rejected", "refunded")
)  # fmt: skip
DELIVERY_EVENTS = tuple(
    f"delivery.{name}.v1"
    for name in ("created", "rider_assigned", "rider_at_store", "picked_up", "delivering", "delivered", "exception",
                 "returned", "rider_unassigned", "cancelled")
)  # fmt: skip
CODE_EVENTS = ("code.issued.v1", "code.redeemed.v1", "code.reversed.v1", "code.revoked.v1")
CASE_EVENTS = tuple(
    f"aftersales.{name}.v1"
    for name in ("requested", "approved", "rejected", "negotiated", "escalated", "refund_requested", "closed",
                 "cancelled", "compensation_granted", "ruled", "refunded")
)  # fmt: skip


def event_name(event_type: str) -> str:
    """`order.paid.v1` -> `order.paid`: the name webhooks, streams and the inbox show."""
    return event_type.rsplit(".", 1)[0]


# The event types a merchant's webhook endpoint may ask for.
WEBHOOK_EVENT_TYPES = tuple(
    sorted(event_name(t) for t in (*ORDER_EVENTS, *DELIVERY_EVENTS, *CODE_EVENTS, *CASE_EVENTS))
)


class StoreView(EventView):
    id: str
    name: str


class ContactView(EventView):
    phone: str


class AmountsView(EventView):
    total_fen: int


class OrderEventView(EventView):
    order_id: str
    status: str
    fulfilment_mode: str
    customer_id: str
    merchant_id: str
    store: StoreView
    contact: ContactView
    amounts: AmountsView


class OrderRejectedView(OrderEventView):
    reason: str


class RefundView(EventView):
    out_refund_no: str
    amount_fen: int


class OrderRefundedView(OrderEventView):
    refund: RefundView


class DeliveryView(EventView):
    delivery_id: str
    order_id: str
    merchant_id: str
    store_id: str
    customer_id: str
    status: str
    carrier: str | None
    rider: dict[str, str] | None
    reason: str | None
    eta: Timestamp | None


class DeliveryCancelledView(DeliveryView):
    by: str | None = None


class CodeView(EventView):
    code_id: str
    kind: str
    order_id: str | None
    merchant_id: str
    store_id: str
    customer_id: str
    status: str


class CaseView(EventView):
    case_id: str
    order_id: str
    type: str
    state: str
    customer_id: str
    merchant_id: str
    store_id: str
    agreed_fen: int | None


class CaseRuledView(CaseView):
    outcome: str
    amount_fen: int | None


class CaseRefundedView(CaseView):
    refunded_fen: int
