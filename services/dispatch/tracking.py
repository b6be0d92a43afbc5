"""Reconciliation and tracking. A delivery its carriers have been silent about is queried and what they say is
applied as a report. Tracking only reads a position: it asks the carrier with no transaction open and records the
answer conditionally afterwards, so a slow carrier holds neither the delivery's row nor a connection."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import deadlines, fleet, reports
from services.dispatch.carriers import OWN_FLEET, WIRES
from services.dispatch.carriers.base import NotSupported, Op, Update
from services.dispatch.desk import LIVE, Desk, offer_ref
from services.dispatch.domain import DeliveryStatus
from services.dispatch.errors import CarrierRefused, CarrierUnavailable
from services.dispatch.models import CarrierAccount, Delivery, Offer
from shared.geo import distance_m

log = logging.getLogger(__name__)


async def reconcile(session: AsyncSession, desk: Desk, delivery: Delivery) -> None:
    """Asks the carriers about a delivery they have been silent about, and applies what they say."""
    if delivery.ended_at is not None:
        return
    offers = (
        [await session.get_one(Offer, delivery.offer_id)]
        if delivery.offer_id
        else await desk.offers(session, delivery, LIVE)
    )
    for offer in offers:
        if offer.carrier == OWN_FLEET or offer.account_id is None:
            continue
        try:
            report = await ask(session, desk, offer)
        except (CarrierRefused, CarrierUnavailable) as error:
            log.warning("reconciliation query failed", extra={"delivery_id": str(delivery.id), "error": str(error)})
            continue
        await reports.apply(session, desk, delivery, offer, report, "poll")
    if delivery.ended_at is None:
        await deadlines.watch(session, desk, delivery)


async def ask(session: AsyncSession, desk: Desk, offer: Offer) -> Update:
    """What the carrier says about an offer now (its status query), as a report."""
    account = await session.get_one(CarrierAccount, offer.account_id)
    answer = await desk.call(account, Op.query, offer_ref(offer))
    return WIRES[offer.carrier].update_from({"shop_order_id": offer.shop_order_id, **answer})


async def track(session: AsyncSession, desk: Desk, delivery: Delivery) -> Offer | None:
    """Refreshes the rider's position and ETA from what we know: the own rider's last report, or a carrier's
    position under 30 s old. Returns the winning offer when its carrier has to be asked instead (`locate`,
    outside any transaction)."""
    if delivery.ended_at is not None or delivery.offer_id is None or delivery.status == DeliveryStatus.created.value:
        return None
    now = desk.clock.now()
    if delivery.carrier == OWN_FLEET:
        await fleet.track(session, desk.settings, delivery, now)
        return None
    if delivery.rider_located_at is not None and now - delivery.rider_located_at < timedelta(seconds=30):
        return None
    offer = await session.get_one(Offer, delivery.offer_id)
    return offer if offer.account_id is not None else None


async def locate(session: AsyncSession, desk: Desk, delivery: Delivery, offer: Offer) -> None:
    """Asks the offer's carrier where its rider is, then records the answer in a transaction of its own, if the
    offer still carries the delivery. `session` must have no transaction open: a slow carrier holds neither
    the delivery's row nor a connection."""
    async with session.begin():
        account = await session.get_one(CarrierAccount, offer.account_id)
    try:
        answer = await desk.call(account, Op.locate, offer_ref(offer))
    except (CarrierRefused, CarrierUnavailable, NotSupported):
        return
    now = desk.clock.now()
    position: dict[str, Any] = {}
    if answer.get("rider_lat") is not None and answer.get("rider_lng") is not None:
        position |= {
            "rider_lat": float(answer["rider_lat"]),
            "rider_lng": float(answer["rider_lng"]),
            "rider_located_at": now,
        }
    lat, lng = position.get("rider_lat", delivery.rider_lat), position.get("rider_lng", delivery.rider_lng)
    if answer.get("eta_seconds"):
        position["eta_at"] = now + timedelta(seconds=float(answer["eta_seconds"]))
    elif lat is not None and lng is not None and delivery.dropoff.get("lat") is not None:
        metres = distance_m(lat, lng, delivery.dropoff["lat"], delivery.dropoff["lng"])
        position["eta_at"] = now + timedelta(seconds=metres / desk.settings.own_fleet_speed_mps)
    if not position:
        return
    async with session.begin():
        recorded = await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.offer_id == offer.id, Delivery.ended_at.is_(None))
            .values(**position)
            .returning(Delivery.id)
        )
        if recorded.first() is not None:
            for name, value in position.items():
                setattr(delivery, name, value)
