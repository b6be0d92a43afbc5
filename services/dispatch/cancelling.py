"""Cancelling: a whole delivery (the merchant's or the order's decision, refused once the goods are picked up), one
offer at its carrier with the fee it deducts recorded, the fee previewed before, and a losing offer cancelled on its
timer (left visible for ops when its carrier refuses)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import endings, fleet
from services.dispatch.carriers import OWN_FLEET, WIRES
from services.dispatch.carriers.base import Op
from services.dispatch.desk import LIVE, Desk, offer_ref
from services.dispatch.domain import BEFORE_PICKUP, TERMINAL, DeliveryStatus
from services.dispatch.errors import CarrierRefused, DeliveryEnded
from services.dispatch.models import CarrierAccount, Delivery, Offer

log = logging.getLogger(__name__)


async def cancel_fee(desk: Desk, delivery: Delivery, offer: Offer, account: CarrierAccount | None) -> int:
    """What cancelling this offer would cost now: the carrier's own preview, or its published rule. Needs no
    session: a preview may be asked with no transaction open."""
    if offer.carrier == OWN_FLEET or account is None:
        return 0
    wire = WIRES[offer.carrier]
    won = delivery.offer_id == offer.id
    if Op.preview_cancel in wire.paths:
        answer = await desk.call(account, Op.preview_cancel, offer_ref(offer, reason_id=1))
        return int(answer.get("deduct_fen") or 0)
    return wire.cancel_fee_fen(
        accepted_at=delivery.accepted_at if won else None,
        arrived_at=delivery.arrived_at if won else None,
        picked_up=won and delivery.status not in BEFORE_PICKUP,
        now=desk.clock.now(),
    )


async def cancel_offer(session: AsyncSession, desk: Desk, delivery: Delivery, offer: Offer, reason: str) -> int:
    """Cancels one offer at its carrier; records and returns the fee the carrier deducted."""
    if offer.cancel_fee_fen is not None:
        return 0
    account = await desk.account(session, offer)
    fee = await cancel_fee(desk, delivery, offer, account)
    if offer.carrier != OWN_FLEET and account is not None:
        answer = await desk.call(account, Op.cancel, offer_ref(offer, reason_id=1, reason=reason))
        fee = int(answer.get("deduct_fen", fee) or 0)
    else:
        await fleet.withdraw(session, desk.clock, delivery.id)
    offer.cancel_fee_fen = fee
    offer.ended_at = offer.ended_at or desk.clock.now()
    if offer.status == LIVE:
        offer.status = "cancelled"
    delivery.cancel_fee_fen += fee
    return fee


async def cancel(session: AsyncSession, desk: Desk, delivery: Delivery, *, reason: str, by: str) -> None:
    if delivery.status in TERMINAL:
        raise DeliveryEnded(f"The delivery is already {delivery.status}")
    if delivery.status not in BEFORE_PICKUP:
        raise CarrierRefused("The rider has picked the goods up: the carrier no longer takes a cancellation")
    live = await desk.offers(session, delivery, LIVE)
    winner = await session.get(Offer, delivery.offer_id) if delivery.offer_id else None
    for offer in [*live, *([winner] if winner else [])]:
        await cancel_offer(session, desk, delivery, offer, reason)
    await endings.end(session, desk, delivery, DeliveryStatus.cancelled, reason=reason, source=by)


async def cancel_loser(session: AsyncSession, desk: Desk, offer_id: uuid.UUID) -> None:
    offer = await session.get(Offer, offer_id)
    if offer is None:
        return
    delivery = await desk.locked(session, offer.delivery_id)
    try:
        async with session.begin_nested():
            await cancel_offer(session, desk, delivery, offer, "another carrier took the delivery")
    except CarrierRefused as refusal:
        # Too late to cancel (its rider already has the goods, say): left visible for ops to settle by hand.
        offer.error = f"cancel refused: {refusal}"[:500]
        log.warning("losing offer not cancelled", extra={"offer_id": str(offer.id), "error": str(refusal)})
