"""Events the dispatch service publishes on `dispatch.events`, keyed by the order id:
`delivery.created/rider_assigned/rider_at_store/picked_up/delivering/delivered/exception/cancelled/returned.v1`,
`delivery.rider_unassigned.v1` when a rider withdraws, and `delivery.location.v1` when the rider's position is
known anew (the own rider's report, a carrier's answer or callback; at most every DISPATCH_LOCATION_EVENT_SECONDS for
an own rider). Each carries the delivery, its carrier and waybill, the
rider, the fees (quote, tip, cancel fees) and the reason (`DeliveryFacts`); `status` tells a pickup failure or a
failed dispatch apart from a cancellation in `delivery.cancelled.v1`. `PUBLISHED` is the contract: `publish` builds
the event's model, so no field outside it can be sent."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.models import Delivery
from shared.clock import Clock
from shared.events.contracts import EventPayload, Timestamp
from shared.events.envelope import new_event
from shared.events.outbox import add_event

SOURCE = "dispatch"


def event_type(name: str) -> str:
    return f"delivery.{name}.v1"


class DeliveryFacts(EventPayload):
    """The delivery as every dispatch event carries it."""

    delivery_id: str
    order_id: str
    merchant_id: str
    store_id: str
    customer_id: str
    status: str = Field(description="The delivery's status: `created` ... `delivered`, or how it ended")
    carrier: str | None = Field(description="None until a carrier took it")
    waybill_id: str | None
    rider: dict[str, str] | None = Field(description="`id`, `name`, `phone`, as far as the carrier tells them")
    fee_fen: int | None
    tip_fen: int
    cancel_fee_fen: int
    reason: str | None
    eta: Timestamp | None


class CarrierReported(DeliveryFacts):
    """A move the carrier (or the own rider) reported: its own status code, when it gave one."""

    carrier_code: str | None = None


class DeliveryEnded(CarrierReported):
    """`delivery.cancelled.v1`: reported by the carrier (`carrier_code`), or decided here (`by`: the merchant, the
    order service, or `system` when no carrier took it)."""

    by: str | None = None


class RiderUnassigned(DeliveryFacts):
    previous_rider: dict[str, str] | None


class RiderLocated(DeliveryFacts):
    """Where the rider is (GCJ-02) and when that was known; `eta` is refreshed from it."""

    lat: float = Field(description="Latitude, GCJ-02")
    lng: float = Field(description="Longitude, GCJ-02")
    located_at: Timestamp


PUBLISHED: dict[str, type[EventPayload]] = {
    event_type("created"): DeliveryFacts,
    **{
        event_type(name): CarrierReported
        for name in (
            "rider_assigned",
            "rider_at_store",
            "picked_up",
            "delivering",
            "delivered",
            "exception",
            "returned",
        )
    },
    event_type("cancelled"): DeliveryEnded,
    event_type("rider_unassigned"): RiderUnassigned,
    event_type("location"): RiderLocated,
}


async def publish_location(session: AsyncSession, clock: Clock, delivery: Delivery) -> None:
    """Stages `delivery.location.v1` when the delivery knows where its rider is."""
    if delivery.rider_lat is None or delivery.rider_lng is None or delivery.rider_located_at is None:
        return
    await publish(session, clock, delivery, "location", lat=delivery.rider_lat, lng=delivery.rider_lng,
                  located_at=delivery.rider_located_at)  # fmt: skip


async def publish(session: AsyncSession, clock: Clock, delivery: Delivery, name: str, **extra: Any) -> None:
    """Stages `delivery.<name>.v1` in the outbox of the caller's transaction: the delivery's facts and `extra`, as the
    event's model (refusing a field it lacks)."""
    facts = {
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
        "eta": delivery.eta_at,
    }
    data = PUBLISHED[event_type(name)].model_validate(facts | extra).model_dump(mode="json")
    event = new_event(event_type(name), source=SOURCE, subject=delivery.order_id, data=data, clock=clock)
    await add_event(session, event)
