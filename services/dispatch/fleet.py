"""The merchant's own fleet: riders go online, report where they are, and are offered deliveries one at a time,
nearest first; an offer stands for `rider_offer_seconds`, then goes to the next rider. An accepted task moves
through arrive → pick up → hand over, and the handover needs the customer's finish code, redeemed by the
redemption service: the rider's own token is forwarded with a short-lived voucher from dispatch naming the rider,
the delivery and its order (shared/handover.py), so the redemption service refuses, before redeeming anything, a
code that is not this picked-up delivery's.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.carriers import OWN_FLEET
from services.dispatch.carriers.base import Update
from services.dispatch.domain import DeliveryStatus as S
from services.dispatch.domain import Verdict
from services.dispatch.errors import NotYourTask, OfferNotOpen, WrongStep
from services.dispatch.models import Delivery, Offer, Rider, RiderOffer
from services.dispatch.schemas import HandOver
from services.dispatch.settings import DispatchSettings
from shared.auth import Principal
from shared.clock import Clock
from shared.errors import Forbidden, UpstreamUnavailable
from shared.geo import distance_m
from shared.handover import HEADER, Voucher, VoucherSigner
from shared.timers import schedule_timer


class Dispatcher(Protocol):
    """What the own fleet asks of the dispatcher (services/dispatch/service.py), whose rooms (placing, endings,
    cancelling, tracking) call into this module: named here, so they do not import each other."""

    settings: DispatchSettings
    clock: Clock

    async def locked(self, session: AsyncSession, delivery_id: uuid.UUID) -> Delivery: ...
    async def offers(self, session: AsyncSession, delivery: Delivery, status: str | None = None) -> list[Offer]: ...
    async def place(self, session: AsyncSession, delivery: Delivery) -> None: ...
    async def apply(
        self, session: AsyncSession, delivery: Delivery, offer: Offer, report: Update, source: str
    ) -> Verdict: ...


OFFER_TIMER = "rider_offer.expire"
# The steps a rider takes, from the status each needs to the status it makes.
STEPS = {"arrive": (S.rider_assigned, S.rider_at_store), "pickup": (S.rider_at_store, S.picked_up)}


def quote(settings: DispatchSettings, delivery: Delivery) -> dict[str, Any]:
    metres = distance_m(
        delivery.pickup["lat"], delivery.pickup["lng"], delivery.dropoff["lat"], delivery.dropoff["lng"]
    )
    return {
        "carrier": OWN_FLEET,
        "account_id": None,
        "fee_fen": settings.own_fleet_base_fen + settings.own_fleet_per_km_fen * (metres // 1000),
        "eta_seconds": int(metres / settings.own_fleet_speed_mps),
        "distance_m": metres,
    }


# --- riders -------------------------------------------------------------------------------------------------------


async def rider_for_update(session: AsyncSession, clock: Clock, principal: Principal) -> Rider:
    """The calling rider's row, created on first use (riders are identities from the token)."""
    if not principal.merchant_id:
        raise Forbidden("A rider token must name the rider's merchant")
    await session.execute(
        insert(Rider)
        .values(id=principal.sub, merchant_id=principal.merchant_id, online=False, updated_at=clock.now())
        .on_conflict_do_nothing()
    )
    return await session.scalar(select(Rider).where(Rider.id == principal.sub).with_for_update())  # type: ignore[return-value]


async def offer_next(
    session: AsyncSession, clock: Clock, settings: DispatchSettings, delivery: Delivery, offer: Offer
) -> bool:
    """Offers the delivery to the nearest free online rider not yet asked; False when there is none."""
    now = clock.now()
    fresh = now - timedelta(minutes=settings.rider_location_fresh_minutes)
    asked = select(RiderOffer.rider_id).where(RiderOffer.delivery_id == delivery.id)
    busy = exists().where(
        RiderOffer.rider_id == Rider.id,
        RiderOffer.status.in_(("offered", "accepted")),
        RiderOffer.delivery_id == Delivery.id,
        Delivery.ended_at.is_(None),
    )
    riders = (
        await session.scalars(
            select(Rider).where(
                Rider.merchant_id == delivery.merchant_id,
                Rider.online.is_(True),
                Rider.located_at >= fresh,
                Rider.id.not_in(asked),
                ~busy,
            )
        )
    ).all()
    ranked = sorted(
        riders, key=lambda r: distance_m(r.lat or 0, r.lng or 0, delivery.pickup["lat"], delivery.pickup["lng"])
    )
    for rider in ranked:
        offered = await session.scalar(
            insert(RiderOffer)
            .values(
                id=uuid.uuid4(),
                delivery_id=delivery.id,
                rider_id=rider.id,
                status="offered",
                distance_m=distance_m(rider.lat or 0, rider.lng or 0, delivery.pickup["lat"], delivery.pickup["lng"]),
                offered_at=now,
                expires_at=now + timedelta(seconds=settings.rider_offer_seconds),
            )
            .on_conflict_do_nothing()
            .returning(RiderOffer.id)
        )
        if offered is not None:
            await schedule_timer(
                session,
                kind=OFFER_TIMER,
                key=str(offered),
                due_at=now + timedelta(seconds=settings.rider_offer_seconds),
            )
            return True
    return False


async def withdraw(session: AsyncSession, clock: Clock, delivery_id: uuid.UUID) -> None:
    await session.execute(
        update(RiderOffer)
        .where(RiderOffer.delivery_id == delivery_id, RiderOffer.status.in_(("offered", "accepted")))
        .values(status="withdrawn", answered_at=clock.now())
    )


async def _fleet_offer(session: AsyncSession, delivery: Delivery) -> Offer:
    offer = await session.scalar(
        select(Offer)
        .where(Offer.delivery_id == delivery.id, Offer.carrier == OWN_FLEET, Offer.status.in_(("placed", "won")))
        .order_by(Offer.placed_at.desc())
        .limit(1)
    )
    if offer is None:
        raise OfferNotOpen("This delivery is no longer offered to the fleet")
    return offer


def _report(rider: Rider, status: S, now: datetime, reason: str) -> Update:
    return Update(
        carrier=OWN_FLEET,
        code=status.value,
        status=status,
        reason=reason,
        action_time=now,
        rider={"id": rider.id, "name": rider.name, "phone": rider.phone},
        rider_lat=rider.lat,
        rider_lng=rider.lng,
    )


async def answer(dispatcher: Dispatcher, session: AsyncSession, principal: Principal, delivery_id: uuid.UUID,
                 *, accept: bool) -> Delivery:  # fmt: skip
    """The rider takes or declines an open offer; a declined (or expired) offer goes to the next rider."""
    now = dispatcher.clock.now()
    rider = await rider_for_update(session, dispatcher.clock, principal)
    answered = await session.scalar(
        update(RiderOffer)
        .where(
            RiderOffer.delivery_id == delivery_id,
            RiderOffer.rider_id == rider.id,
            RiderOffer.status == "offered",
            RiderOffer.expires_at > now,
        )
        .values(status="accepted" if accept else "declined", answered_at=now)
        .returning(RiderOffer.id)
    )
    if answered is None:
        raise OfferNotOpen("This task is not offered to you (any more)")
    delivery = await dispatcher.locked(session, delivery_id)
    offer = await _fleet_offer(session, delivery)
    if accept:
        await dispatcher.apply(
            session, delivery, offer, _report(rider, S.rider_assigned, now, "rider accepted"), "rider"
        )
        if delivery.offer_id != offer.id:
            raise OfferNotOpen("Another carrier took this delivery first")
    else:
        await pass_on(dispatcher, session, delivery, offer)
    return delivery


async def expire(dispatcher: Dispatcher, session: AsyncSession, rider_offer_id: uuid.UUID) -> None:
    expired = await session.scalar(
        update(RiderOffer)
        .where(RiderOffer.id == rider_offer_id, RiderOffer.status == "offered")
        .values(status="expired", answered_at=dispatcher.clock.now())
        .returning(RiderOffer.delivery_id)
    )
    if expired is None:
        return
    delivery = await dispatcher.locked(session, expired)
    if delivery.ended_at is None and delivery.offer_id is None:
        await pass_on(dispatcher, session, delivery, await _fleet_offer(session, delivery))


async def pass_on(dispatcher: Dispatcher, session: AsyncSession, delivery: Delivery, offer: Offer) -> None:
    if await offer_next(session, dispatcher.clock, dispatcher.settings, delivery, offer):
        return
    offer.status, offer.error, offer.ended_at = "failed", "no own rider took the delivery", dispatcher.clock.now()
    if not await dispatcher.offers(session, delivery, "placed"):
        await dispatcher.place(session, delivery)


async def _task(session: AsyncSession, principal: Principal, delivery_id: uuid.UUID, *, lock: bool = True) -> Delivery:
    query = select(Delivery).where(Delivery.id == delivery_id)
    # Locked, it is read afresh: the row may have moved since an unlocked read in the same session.
    delivery = await session.scalar(
        query.with_for_update().execution_options(populate_existing=True) if lock else query
    )
    if delivery is None or delivery.carrier != OWN_FLEET or (delivery.rider or {}).get("id") != principal.sub:
        raise NotYourTask("No such task for this rider")
    return delivery


async def step(dispatcher: Dispatcher, session: AsyncSession, principal: Principal, delivery_id: uuid.UUID,
               action: str) -> Delivery:  # fmt: skip
    delivery = await _task(session, principal, delivery_id)
    needed, target = STEPS[action]
    if delivery.status == target.value:
        return delivery  # a retried tap
    if delivery.status != needed.value:
        raise WrongStep(f"The task is {delivery.status}; {action} needs {needed.value}")
    rider = await rider_for_update(session, dispatcher.clock, principal)
    offer = await session.get_one(Offer, delivery.offer_id)
    await dispatcher.apply(session, delivery, offer, _report(rider, target, dispatcher.clock.now(), action), "rider")
    return delivery


def handover_request_no(delivery_id: uuid.UUID, attempt_no: str) -> str:
    """The redemption request of one handover attempt: the rider app's attempt number under the delivery."""
    return "handover-" + hashlib.sha256(f"{delivery_id}:{attempt_no}".encode()).hexdigest()[:48]


async def hand_over(
    dispatcher: Dispatcher,
    session: AsyncSession,
    principal: Principal,
    delivery_id: uuid.UUID,
    attempt: HandOver,
    authorization: str,
    http: httpx.AsyncClient,
    vouchers: VoucherSigner,
) -> tuple[Delivery, httpx.Response]:
    """Redeems the customer's finish code at the redemption service, vouching that this rider has picked up this
    delivery, then marks the delivery delivered. Each attempt has its own request number (the rider app's, under
    the delivery's), so a retried attempt gets its first answer and a new attempt (a fresh QR, the code typed
    again) is a new request. The redemption service's refusal is passed back as is. The delivery's row is locked
    only after the redemption service answered: a slow answer holds up no callback or timer of this delivery."""
    delivery = await _task(session, principal, delivery_id, lock=False)
    if delivery.status == S.delivered.value:
        return delivery, httpx.Response(200)
    _check_handover(delivery)
    voucher = Voucher(principal.sub, delivery.merchant_id, str(delivery.id), delivery.order_id)
    presented = attempt.model_dump(exclude_none=True, exclude={"request_no"})
    try:
        answer = await http.post(
            f"{dispatcher.settings.redemption_url}/v1/redemptions",
            json={"request_no": handover_request_no(delivery.id, attempt.request_no), **presented},
            headers={"Authorization": authorization, HEADER: vouchers.sign(voucher, dispatcher.clock.now())},
        )
    except httpx.HTTPError as error:
        raise UpstreamUnavailable(f"The redemption service could not be reached: {error!r}") from error
    if answer.status_code >= 300:
        return delivery, answer
    delivery = await _task(session, principal, delivery_id)
    # Moved meanwhile (delivered by the redemption's own event, say): that event settles it, as it would anyway.
    if delivery.status in (S.picked_up.value, S.delivering.value):
        await mark_delivered(dispatcher, session, delivery, principal.sub, "finish code redeemed")
    return delivery, answer


def _check_handover(delivery: Delivery) -> None:
    if delivery.status not in (S.picked_up.value, S.delivering.value):
        raise WrongStep(f"The task is {delivery.status}; hand over needs picked_up")


async def mark_delivered(
    dispatcher: Dispatcher, session: AsyncSession, delivery: Delivery, rider_id: str, reason: str
) -> None:
    rider = await session.get(Rider, rider_id)
    if rider is None or delivery.offer_id is None:
        return
    offer = await session.get_one(Offer, delivery.offer_id)
    await dispatcher.apply(
        session, delivery, offer, _report(rider, S.delivered, dispatcher.clock.now(), reason), "rider"
    )


async def on_finish_code(dispatcher: Dispatcher, session: AsyncSession, order_id: str, principal: str) -> None:
    """A finish code was redeemed (by a handover whose answer never reached dispatch, or by ops settling a dispute):
    a picked-up own-fleet delivery is done."""
    delivery = await session.scalar(
        select(Delivery)
        .where(Delivery.order_id == order_id, Delivery.ended_at.is_(None), Delivery.carrier == OWN_FLEET)
        .with_for_update()
    )
    if delivery is None or delivery.status not in (S.picked_up.value, S.delivering.value):
        return
    rider_id = (delivery.rider or {}).get("id", "")
    await mark_delivered(dispatcher, session, delivery, rider_id, f"finish code redeemed by {principal}")


async def track(session: AsyncSession, settings: DispatchSettings, delivery: Delivery, now: datetime) -> None:
    rider = await session.get(Rider, (delivery.rider or {}).get("id", ""))
    if rider is None or rider.lat is None or rider.lng is None:
        return
    delivery.rider_lat, delivery.rider_lng, delivery.rider_located_at = rider.lat, rider.lng, rider.located_at
    legs = 0
    if delivery.status in (S.rider_assigned.value, S.rider_at_store.value):
        legs += distance_m(rider.lat, rider.lng, delivery.pickup["lat"], delivery.pickup["lng"])
        legs += distance_m(
            delivery.pickup["lat"], delivery.pickup["lng"], delivery.dropoff["lat"], delivery.dropoff["lng"]
        )
    else:
        legs += distance_m(rider.lat, rider.lng, delivery.dropoff["lat"], delivery.dropoff["lng"])
    delivery.eta_at = now + timedelta(seconds=legs / settings.own_fleet_speed_mps)
