"""The dispatcher: deliveries from an order event to an end, one verb a use case, each carried out by the room that
holds it (the rooms import in one direction, from the desk up):

    desk.py        settings, clock, carriers, vault; a delivery under its row lock, its offers, a carrier call
    deadlines.py   the durable timers: place, escalate, reconcile, cancel a losing offer
    endings.py     a delivery's end and its offers dropped
    placing.py     creating a delivery, quoting and ranking the store's carriers, offering it wave by wave
    reports.py     status reports recorded once and applied through the guard; the first report wins the delivery
    cancelling.py  a delivery or an offer cancelled at its carrier, the fee previewed and recorded
    escalation.py  tips, and escalation: a higher tip, then the next carrier
    tracking.py    reconciling a silent delivery, and the rider's position and ETA

Every carrier call that changes the delivery happens inside the caller's transaction with the delivery row locked
(`FOR UPDATE`); tracking, which only reads a position, asks the carrier with no transaction open. Loser
cancellations and escalation run on durable timers.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import cancelling, escalation, placing, reports, tracking
from services.dispatch.carriers.base import Update
from services.dispatch.consumed import OrderToDeliver
from services.dispatch.desk import Desk
from services.dispatch.domain import Verdict
from services.dispatch.models import CarrierAccount, Delivery, Offer


def app_dispatcher(request: Request) -> Dispatcher:
    """The app's dispatcher (made in `create_app`), for the routers."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


class Dispatcher(Desk):
    async def start(self, session: AsyncSession, order: OrderToDeliver) -> uuid.UUID | None:
        return await placing.start(session, self, order)

    async def redispatch(self, session: AsyncSession, previous: Delivery) -> uuid.UUID:
        return await placing.redispatch(session, self, previous)

    async def place(self, session: AsyncSession, delivery: Delivery) -> None:
        await placing.place(session, self, delivery)

    async def apply(
        self, session: AsyncSession, delivery: Delivery, offer: Offer, report: Update, source: str
    ) -> Verdict:
        return await reports.apply(session, self, delivery, offer, report, source)

    async def cancel_fee(self, delivery: Delivery, offer: Offer, account: CarrierAccount | None) -> int:
        return await cancelling.cancel_fee(self, delivery, offer, account)

    async def cancel(self, session: AsyncSession, delivery: Delivery, *, reason: str, by: str) -> None:
        await cancelling.cancel(session, self, delivery, reason=reason, by=by)

    async def cancel_loser(self, session: AsyncSession, offer_id: uuid.UUID) -> None:
        await cancelling.cancel_loser(session, self, offer_id)

    async def add_tip(self, session: AsyncSession, delivery: Delivery, tip_fen: int, *, by: str) -> None:
        await escalation.add_tip(session, self, delivery, tip_fen, by=by)

    async def escalate(self, session: AsyncSession, delivery: Delivery) -> None:
        await escalation.escalate(session, self, delivery)

    async def reconcile(self, session: AsyncSession, delivery: Delivery) -> None:
        await tracking.reconcile(session, self, delivery)

    async def ask(self, session: AsyncSession, offer: Offer) -> Update:
        return await tracking.ask(session, self, offer)

    async def track(self, session: AsyncSession, delivery: Delivery) -> Offer | None:
        return await tracking.track(session, self, delivery)

    async def locate(self, session: AsyncSession, delivery: Delivery, offer: Offer) -> None:
        await tracking.locate(session, self, delivery, offer)
