"""How a delivery and its offers end: by our own decision (a merchant's cancellation, no carrier left, the order
cancelled), or by a carrier's final report; either way its deadlines are disarmed and every offer still live is
dropped, to be cancelled at its carrier on a timer (an own rider's is withdrawn at once)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import deadlines, events, fleet
from services.dispatch.carriers import OWN_FLEET
from services.dispatch.desk import LIVE, Desk
from services.dispatch.domain import EVENT_NAME, DeliveryStatus
from services.dispatch.models import Delivery, DeliveryChange, Offer
from shared.timers import schedule_timer


async def drop(session: AsyncSession, desk: Desk, offer: Offer, status: str) -> None:
    """Marks a live offer as lost (or withdrawn) and has it cancelled at the carrier on a timer, fee recorded."""
    if offer.status not in (LIVE, "lost"):
        return
    offer.status = status
    if offer.carrier == OWN_FLEET:
        await fleet.withdraw(session, desk.clock, offer.delivery_id)
        offer.ended_at = desk.clock.now()
        return
    await schedule_timer(session, kind=deadlines.CANCEL_OFFER_TIMER, key=str(offer.id), due_at=desk.clock.now())


async def close(session: AsyncSession, desk: Desk, delivery: Delivery) -> None:
    now = desk.clock.now()
    delivery.ended_at = delivery.ended_at or now
    await deadlines.disarm(session, delivery, now)
    for offer in await desk.offers(session, delivery, LIVE):
        await drop(session, desk, offer, "lost")


async def end(
    session: AsyncSession, desk: Desk, delivery: Delivery, status: DeliveryStatus, *, reason: str, source: str
) -> None:
    """Ends the delivery by our own decision (merchant cancel, no carrier, order cancelled)."""
    now = desk.clock.now()
    await session.execute(
        insert(DeliveryChange)
        .values(
            delivery_id=delivery.id,
            offer_id=None,
            source=source,
            code=status.value,
            status=status.value,
            rider_key="",
            action_time=now,
            verdict="applied",
            reason=reason,
            recorded_at=now,
        )
        .on_conflict_do_nothing()
    )
    delivery.status, delivery.reason, delivery.updated_at = status.value, reason, now
    await close(session, desk, delivery)
    await events.publish(session, desk.clock, delivery, EVENT_NAME[status], by=source)
