"""How the dispatch service reacts to order and redemption events and to its own timers.

- `order.accepted.v1` / `order.ready.v1`: a delivery order's delivery is created by the store's trigger
  (`on_accept` or `on_ready`; a `ready` order whose store dispatches on accept gets one too if it has none);
- `order.cancelled.v1`, and `order.refunded.v1` once fully refunded: the live delivery is cancelled at its carrier
  (fee recorded); after pickup the carrier no longer takes a cancellation and it is left to finish or return;
- `code.redeemed.v1` of a finish code: an own-fleet delivery is handed over (the consumer skips other codes').
Each reads its event through its view (services/dispatch/consumed.py).
Timers: place, escalate, reconcile, cancel a losing offer, retry a callback whose apply failed, prune callbacks,
expire a rider's offer.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import callbacks, fleet
from services.dispatch.consumed import FinishCodeRedeemed, OrderRefunded, OrderToDeliver
from services.dispatch.deadlines import CANCEL_OFFER_TIMER, ESCALATE_TIMER, PLACE_TIMER, RECONCILE_TIMER
from services.dispatch.domain import TERMINAL
from services.dispatch.errors import CarrierRefused, DeliveryEnded
from services.dispatch.models import Delivery
from services.dispatch.service import Dispatcher
from shared.events.consumer import EventHandler
from shared.events.contracts import EventView, handles
from shared.events.envelope import Envelope
from shared.events.models import Timer
from shared.timers import TimerHandler

log = logging.getLogger(__name__)


def _of_a_finish_code(data: FinishCodeRedeemed) -> bool:
    """Only a finish code's redemption hands a delivery over; pickup codes and vouchers are not dispatch's."""
    return data.kind == "finish" and bool(data.order_id)


class DispatchReactions:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def event_handlers(self) -> dict[str, EventHandler]:
        return {
            "order.accepted.v1": handles(OrderToDeliver, self.on_order_accepted),
            "order.ready.v1": handles(OrderToDeliver, self.on_order_ready),
            "order.cancelled.v1": handles(EventView, self.on_order_cancelled),
            "order.refunded.v1": handles(OrderRefunded, self.on_order_refunded),
            "code.redeemed.v1": handles(FinishCodeRedeemed, self.on_code_redeemed, concerns=_of_a_finish_code),
        }

    def timer_handlers(self) -> dict[str, TimerHandler]:
        return {
            PLACE_TIMER: self.on_place,
            ESCALATE_TIMER: self.on_escalate,
            RECONCILE_TIMER: self.on_reconcile,
            CANCEL_OFFER_TIMER: self.on_cancel_offer,
            callbacks.APPLY_TIMER: self.on_callback,
            callbacks.PRUNE_TIMER: self.on_callback_prune,
            fleet.OFFER_TIMER: self.on_rider_offer_expiry,
        }

    # --- events -----------------------------------------------------------------------------------------------

    async def on_order_accepted(self, session: AsyncSession, event: Envelope, data: OrderToDeliver) -> None:
        if data.dispatch is not None and data.dispatch.trigger == "on_accept":
            await self.dispatcher.start(session, data)

    async def on_order_ready(self, session: AsyncSession, event: Envelope, data: OrderToDeliver) -> None:
        await self.dispatcher.start(session, data)

    async def on_order_cancelled(self, session: AsyncSession, event: Envelope, data: EventView) -> None:
        await self._cancel(session, event.subject, "order cancelled")

    async def on_order_refunded(self, session: AsyncSession, event: Envelope, data: OrderRefunded) -> None:
        if data.status == "refunded":
            await self._cancel(session, event.subject, "order refunded")

    async def _cancel(self, session: AsyncSession, order_id: str, reason: str) -> None:
        delivery = await session.scalar(
            select(Delivery).where(Delivery.order_id == order_id, Delivery.ended_at.is_(None)).with_for_update()
        )
        if delivery is None or delivery.status in TERMINAL:
            return
        try:
            async with session.begin_nested():
                await self.dispatcher.cancel(session, delivery, reason=reason, by="order")
        except (CarrierRefused, DeliveryEnded) as refusal:
            log.warning("delivery not cancelled", extra={"order_id": order_id, "reason": str(refusal)})

    async def on_code_redeemed(self, session: AsyncSession, event: Envelope, data: FinishCodeRedeemed) -> None:
        await fleet.on_finish_code(self.dispatcher, session, data.order_id or event.subject, data.redeemed_by)

    # --- timers -----------------------------------------------------------------------------------------------

    async def _delivery(self, session: AsyncSession, timer: Timer) -> Delivery:
        return await self.dispatcher.locked(session, uuid.UUID(timer.key))

    async def on_place(self, session: AsyncSession, timer: Timer) -> None:
        await self.dispatcher.place(session, await self._delivery(session, timer))

    async def on_escalate(self, session: AsyncSession, timer: Timer) -> None:
        await self.dispatcher.escalate(session, await self._delivery(session, timer))

    async def on_reconcile(self, session: AsyncSession, timer: Timer) -> None:
        await self.dispatcher.reconcile(session, await self._delivery(session, timer))

    async def on_cancel_offer(self, session: AsyncSession, timer: Timer) -> None:
        await self.dispatcher.cancel_loser(session, uuid.UUID(timer.key))

    async def on_callback(self, session: AsyncSession, timer: Timer) -> None:
        await callbacks.apply(session, self.dispatcher, callbacks.callback_id(timer.key))

    async def on_callback_prune(self, session: AsyncSession, timer: Timer) -> None:
        await callbacks.prune(session, self.dispatcher)

    async def on_rider_offer_expiry(self, session: AsyncSession, timer: Timer) -> None:
        await fleet.expire(self.dispatcher, session, uuid.UUID(timer.key))
