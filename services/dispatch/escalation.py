"""Tips and escalation, while a delivery waits for a rider (none ever came, or the carrier's rider withdrew): the
merchant raises the tip, strictly higher; each escalation round raises it a step up to the store strategy's cap,
and once capped gives the looking carrier up and offers the delivery to the next one."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import cancelling, deadlines, placing
from services.dispatch.carriers import OWN_FLEET, WIRES
from services.dispatch.carriers.base import NotSupported, Op
from services.dispatch.desk import LIVE, Desk, offer_ref
from services.dispatch.domain import DeliveryStatus
from services.dispatch.errors import NotWaiting, TipNotHigher
from services.dispatch.models import CarrierAccount, Delivery, DeliveryChange, Offer


def _waiting(delivery: Delivery) -> bool:
    """Waiting for a rider: never taken, or taken and given back (the carrier's rider withdrew)."""
    return delivery.status == DeliveryStatus.created.value and delivery.ended_at is None


async def add_tip(session: AsyncSession, desk: Desk, delivery: Delivery, tip_fen: int, *, by: str) -> None:
    if not _waiting(delivery):
        raise NotWaiting("Tips are only added while the delivery waits for a rider")
    if tip_fen <= delivery.tip_fen:
        raise TipNotHigher(f"The tip is already {delivery.tip_fen} fen; a new one must be higher")
    for offer in await _looking(session, desk, delivery):
        if offer.carrier == OWN_FLEET or offer.account_id is None:
            offer.tip_fen = tip_fen
            continue
        account = await session.get_one(CarrierAccount, offer.account_id)
        try:
            await desk.call(account, Op.add_tip, offer_ref(offer, tip_fen=tip_fen))
        except NotSupported:
            continue
        offer.tip_fen = tip_fen
    delivery.tip_fen, delivery.updated_at = tip_fen, desk.clock.now()
    await _record(session, desk, delivery, code="tip", reason=f"tip raised to {tip_fen} fen by {by}")


async def escalate(session: AsyncSession, desk: Desk, delivery: Delivery) -> None:
    """No rider yet (none ever came, or the carrier's rider withdrew): raise the tip a step (strictly higher,
    capped); once capped, give the looking carrier up and offer the next one."""
    if not _waiting(delivery):
        return
    cap = int(delivery.strategy.get("max_tip_fen", 0))
    looking = await _looking(session, desk, delivery)
    tippable = [o for o in looking if o.carrier != OWN_FLEET and Op.add_tip in WIRES[o.carrier].paths]
    usable = [c for c in delivery.candidates if "error" not in c]
    if tippable and delivery.tip_fen < cap:
        step = min(delivery.tip_fen + desk.settings.tip_step_fen, cap)
        await add_tip(session, desk, delivery, step, by="escalation")
    elif delivery.tried < len(usable):
        for offer in looking:
            await cancelling.cancel_offer(session, desk, delivery, offer, "no rider in time: re-dispatching")
        if delivery.offer_id is not None:
            await _release(session, delivery)
        await _record(session, desk, delivery, code="redispatch", reason="no rider in time: next carrier")
        await placing.place(session, desk, delivery)
        return
    else:
        await _record(session, desk, delivery, code="no_rider", reason="no rider yet and no other carrier")
    await deadlines.arm_escalation(session, desk, delivery)


async def _looking(session: AsyncSession, desk: Desk, delivery: Delivery) -> list[Offer]:
    """The offers whose carriers are looking for a rider: the live ones, or the winner whose rider withdrew."""
    if delivery.offer_id is not None:
        return [await session.get_one(Offer, delivery.offer_id)]
    return await desk.offers(session, delivery, LIVE)


async def _release(session: AsyncSession, delivery: Delivery) -> None:
    """The carrier that won (cancelled by now) is given up: the delivery is free for the next offer, and a late
    report of that carrier is refused like any lost offer's."""
    winner = await session.get_one(Offer, delivery.offer_id)
    winner.status = "cancelled"
    delivery.offer_id, delivery.carrier, delivery.waybill_id, delivery.fee_fen = None, None, None, None
    delivery.pickup_code, delivery.finish_code, delivery.last_action_at = None, None, None


async def _record(session: AsyncSession, desk: Desk, delivery: Delivery, *, code: str, reason: str) -> None:
    now = desk.clock.now()
    session.add(
        DeliveryChange(
            delivery_id=delivery.id,
            offer_id=None,
            source="system",
            code=code,
            status=None,
            rider_key=str(uuid.uuid4()),
            action_time=now,
            verdict="applied",
            reason=reason,
            recorded_at=now,
        )
    )
    await session.flush()
