"""Status reports, from a carrier's callback or query, or an own rider's step: each is recorded once (a repeat is a
duplicate) and applied through the guard (services/dispatch/domain.py). The first report of an offer nobody has
won yet claims the delivery for it; the other offers lose. The caller holds the delivery's row lock, so two reports
about one delivery are applied one after the other."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import deadlines, endings, events, placing
from services.dispatch.carriers import OWN_FLEET
from services.dispatch.carriers.base import Update
from services.dispatch.desk import LIVE, Desk
from services.dispatch.domain import EVENT_NAME, EXCEPTIONAL, TERMINAL, DeliveryStatus, Verdict, judge
from services.dispatch.models import Delivery, Offer
from shared.db import driver_connection

S = DeliveryStatus
# Ends by which a carrier gives up an offer nobody has won yet (any other report claims the delivery for it).
GAVE_UP = frozenset({S.cancelled, S.failed, S.pickup_failed})


async def apply(
    session: AsyncSession, desk: Desk, delivery: Delivery, offer: Offer, report: Update, source: str
) -> Verdict:
    """Records the report (a repeat of an already recorded one is a duplicate) and applies it through the guard.
    The caller holds the delivery's row lock."""
    rider_key = (report.rider or {}).get("phone") or (report.rider or {}).get("id") or ""
    status = report.status.value if report.status else None
    # On the driver (building the ORM insert was a sixth of the callback worker's CPU), after the session's pending
    # changes, as the ORM's own autoflush would; in the caller's transaction (the delivery's lock began it).
    await session.flush()
    driver = await driver_connection(session)
    if not driver.is_in_transaction():
        raise RuntimeError("a report is recorded under the delivery's row lock, in the caller's transaction")
    change_id = await driver.fetchval(
        _RECORD, delivery.id, offer.id, source, report.code, status, rider_key, report.action_time, report.reason,
        desk.clock.now(),
    )  # fmt: skip
    if change_id is None:
        return Verdict.duplicate
    verdict = await _judged(session, desk, delivery, offer, report)
    await driver.execute(_RECORD_VERDICT, change_id, verdict.value)
    return verdict


# A report is recorded once: a repeat (the same offer, code, action time and rider) is a duplicate.
_RECORD = (
    "INSERT INTO delivery_change (delivery_id, offer_id, source, code, status, rider_key, action_time, verdict,"
    " reason, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT DO NOTHING RETURNING id"
)
_RECORD_VERDICT = "UPDATE delivery_change SET verdict = $2 WHERE id = $1"


async def _judged(session: AsyncSession, desk: Desk, delivery: Delivery, offer: Offer, report: Update) -> Verdict:
    status = report.status
    if report.waybill_id and not offer.waybill_id:
        offer.waybill_id = report.waybill_id
    if status is None:  # an exception that changes nothing but must be heard
        if delivery.status in TERMINAL:
            return Verdict.refused
        delivery.reason = report.reason
        await events.publish(session, desk.clock, delivery, "exception", carrier_code=report.code)
        return Verdict.applied
    if delivery.offer_id is not None and delivery.offer_id != offer.id:
        await endings.drop(session, desk, offer, "lost")  # it accepted too late: make sure it is cancelled
        return Verdict.refused
    if delivery.offer_id is None:
        if status is S.created:
            return Verdict.duplicate
        # An end that names a rider came after its rider took it (a queried state can skip the acceptance): it
        # wins, then ends, like a carrier's cancellation after acceptance.
        if status in GAVE_UP and not report.rider:
            return await _offer_ended(session, desk, delivery, offer, report)
        if offer.status != LIVE:
            return Verdict.refused
        won = await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.offer_id.is_(None))
            .values(offer_id=offer.id, carrier=offer.carrier, waybill_id=offer.waybill_id, fee_fen=offer.fee_fen)
            .returning(Delivery.id)
        )
        if won.first() is None:
            return Verdict.refused
        offer.status = "won"
        for other in await desk.offers(session, delivery, LIVE):
            await endings.drop(session, desk, other, "lost")
    same_rider = not report.rider or (delivery.rider or {}).get("phone") == report.rider.get("phone")
    verdict = judge(
        DeliveryStatus(delivery.status),
        status,
        last_action_at=delivery.last_action_at,
        action_time=report.action_time,
        same_rider=same_rider,
    )
    if verdict is Verdict.applied:
        await _move(session, desk, delivery, report)
    return verdict


async def _move(session: AsyncSession, desk: Desk, delivery: Delivery, report: Update) -> None:
    status = report.status
    assert status is not None
    now = desk.clock.now()
    delivery.status = status.value
    delivery.last_action_at = report.action_time
    delivery.updated_at = now
    delivery.waybill_id = delivery.waybill_id or report.waybill_id or None
    if report.rider:
        delivery.rider = report.rider
    located = report.rider_lat is not None and report.rider_lng is not None
    told_at = delivery.rider_located_at
    if located:
        delivery.rider_lat, delivery.rider_lng, delivery.rider_located_at = report.rider_lat, report.rider_lng, now
    if status is S.rider_assigned:
        delivery.accepted_at, delivery.arrived_at = report.action_time, None
    elif status is S.rider_at_store:
        delivery.arrived_at = report.action_time
    if status in TERMINAL or status in EXCEPTIONAL:
        delivery.reason = report.reason
    if status is S.created:  # the rider withdrew: the carrier is looking again, and we escalate again
        withdrawn = delivery.rider
        delivery.rider, delivery.accepted_at, delivery.arrived_at = None, None, None
        await events.publish(session, desk.clock, delivery, "rider_unassigned", previous_rider=withdrawn)
        await deadlines.arm_escalation(session, desk, delivery)
        await deadlines.watch(session, desk, delivery)
        return
    if status in EXCEPTIONAL and EVENT_NAME[status] != "exception":  # e.g. a pickup failure: notice + end
        await events.publish(session, desk.clock, delivery, "exception", carrier_code=report.code)
    if status in TERMINAL:
        await endings.close(session, desk, delivery)
        winner = await session.get(Offer, delivery.offer_id) if delivery.offer_id else None
        if winner is not None and winner.ended_at is None:
            winner.ended_at = now
    else:
        await deadlines.watch(session, desk, delivery)
    await events.publish(session, desk.clock, delivery, EVENT_NAME[status], carrier_code=report.code)
    quiet = told_at is None or now - told_at >= timedelta(seconds=desk.settings.location_event_seconds)
    if located and quiet and status not in TERMINAL and delivery.carrier != OWN_FLEET:
        # A carrier's callback placed the rider (an own rider's position comes with their location reports).
        await events.publish_location(session, desk.clock, delivery)


async def _offer_ended(session: AsyncSession, desk: Desk, delivery: Delivery, offer: Offer, report: Update) -> Verdict:
    """A carrier gave up (or failed to create) before any rider took the delivery: try the next one."""
    if offer.status != LIVE:
        return Verdict.duplicate
    offer.status = "failed" if report.status is S.failed else "cancelled"
    offer.error, offer.ended_at = report.reason, desk.clock.now()
    if not await desk.offers(session, delivery, LIVE):
        await placing.place(session, desk, delivery)
    return Verdict.applied
