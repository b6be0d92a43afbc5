"""What the dispatch service reads of the events it consumes: one narrow view per event, only the fields it uses,
named and typed as the publisher's model has them (services/order/events.py, services/redemption/events.py).
tests/contracts/ checks each against the publisher's model."""

from __future__ import annotations

from typing import Any

from shared.events.contracts import EventView


class PickupPoint(EventView):
    """The store, where the rider picks the order up. A re-dispatch rebuilds it from the previous delivery, whose
    copy may lack any of it but the id."""

    id: str
    name: str | None = None
    phone: str | None = None
    address: str | None = None
    lat: float | None = None
    lng: float | None = None


class DropoffAddress(EventView):
    text: str | None = None
    lat: float | None = None
    lng: float | None = None


class DropoffContact(EventView):
    name: str | None = None
    phone: str | None = None


class StoreDispatch(EventView):
    trigger: str | None = None
    strategy: dict[str, Any] | None = None


class OrderAmounts(EventView):
    items_fen: int = 0


class OrderToDeliver(EventView):
    """`order.accepted.v1` / `order.ready.v1`: the order a delivery is created for."""

    order_id: str
    merchant_id: str
    customer_id: str = ""
    fulfilment_mode: str
    store: PickupPoint
    address: DropoffAddress | None = None
    contact: DropoffContact | None = None
    dispatch: StoreDispatch | None = None
    amounts: OrderAmounts | None = None
    note: str = ""


class OrderRefunded(EventView):
    status: str  # `refunded` once the whole order is


class FinishCodeRedeemed(EventView):
    """`code.redeemed.v1`: a finish code's redemption hands an own-fleet delivery over."""

    kind: str
    order_id: str | None
    redeemed_by: str
