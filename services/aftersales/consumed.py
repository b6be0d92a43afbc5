"""What the aftersales service reads of the events it consumes: one narrow view per event, only the fields it uses,
named and typed as the publisher's model has them (services/order/events.py, services/dispatch/events.py,
services/redemption/events.py). tests/contracts/ checks each against the publisher's model."""

from __future__ import annotations

from typing import Any

from shared.events.contracts import EventView, Timestamp


class ItemView(EventView):
    sku_id: str
    name: str
    price_fen: int
    quantity: int


class AmountsView(EventView):
    items_fen: int
    delivery_fee_fen: int
    total_fen: int
    refunded_fen: int


class StoreView(EventView):
    id: str


class RefundView(EventView):
    cause: str
    amount_fen: int


class RefundFailureView(RefundView):
    error: str


class OrderEventView(EventView):
    order_id: str
    status: str
    fulfilment_mode: str
    customer_id: str
    merchant_id: str
    store: StoreView
    items: list[ItemView]
    amounts: AmountsView
    paid_at: Timestamp | None


class OrderRefundedView(OrderEventView):
    """`order.refunded.v1`: the order, and the refund made, whose cause names who asked for it."""

    refund: RefundView


class OrderRefundFailedView(OrderEventView):
    """`order.refund_failed.v1`: the order, and the refund not made, with why."""

    refund: RefundFailureView


class DeliveryView(EventView):
    order_id: str
    delivery_id: str
    merchant_id: str
    store_id: str
    customer_id: str
    status: str
    carrier: str | None = None
    waybill_id: str | None = None
    rider: dict[str, Any] | None = None
    reason: str | None = None


class DeliveryCancelledView(DeliveryView):
    """`delivery.cancelled.v1`: `by` says who cancelled (none: the carrier, or no rider at all)."""

    by: str | None = None


class RedeemedView(EventView):
    order_id: str | None  # a voucher's has none: the consumer skips those (concerns)
    code_id: str
    kind: str
    merchant_id: str
    customer_id: str
    redemption_id: str | None = None
    redeemed_by: str | None = None
    device_id: str | None = None
    store_id: str | None = None
