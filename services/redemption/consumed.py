"""What the redemption service reads of the order events it consumes: one narrow view per event, only the fields
it uses, named and typed as the order service's model has them (services/order/events.py). tests/contracts/ checks
each against that model."""

from __future__ import annotations

from typing import Any

from shared.events.contracts import EventView


class CodeStore(EventView):
    id: str
    name: str = ""


class OrderToCode(EventView):
    """`order.paid.v1` / `order.accepted.v1`: the order a pickup or finish code is issued for. Its items and amounts
    are kept as the order sent them, the code's summary shown at preview."""

    order_id: str
    fulfilment_mode: str
    merchant_id: str
    customer_id: str
    store: CodeStore
    items: list[dict[str, Any]] = []
    amounts: dict[str, Any] = {}


class OrderCancelled(EventView):
    reason: str | None = None


class OrderRefunded(EventView):
    status: str  # `refunded` once the whole order is
