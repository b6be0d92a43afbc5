"""Carrier callback intake: verify, keep, acknowledge; apply on a timer.

A callback is verified by its carrier's own signature scheme while the carrier waits (a bad one is kept as
`rejected` and answered with the carrier's error body), stored raw (body, query, headers) and acknowledged with the
carrier's expected body; applying it (locking the delivery, the guard, events, cancelling broadcast losers) happens
right after on the `callback.apply` timer, so a slow apply never makes a carrier retry, and a crash in between
loses nothing. Outcomes stay queryable; ops can replay a callback (failed, unknown, or any other).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import accounts
from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import Credentials, Message, SignatureInvalid
from services.dispatch.models import CarrierCallback, Offer
from services.dispatch.service import Dispatcher
from shared.timers import schedule_timer

log = logging.getLogger(__name__)

APPLY_TIMER = "callback.apply"
MAX_ATTEMPTS = 5
KEPT_HEADERS = ("content-type", "user-agent", "x-forwarded-for", "x-request-id", "content-length")


async def _credentials(
    session: AsyncSession, dispatcher: Dispatcher, carrier: str, message: Message
) -> Credentials | None:
    key = WIRES[carrier].callback_key(message)
    if not key:
        return None
    account = await accounts.by_key(session, carrier, key)
    return accounts.credentials(dispatcher.vault, account) if account is not None else None


async def receive(
    session: AsyncSession,
    dispatcher: Dispatcher,
    carrier: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
) -> tuple[CarrierCallback, Message]:
    """Keeps the callback and returns what to answer the carrier."""
    wire = WIRES[carrier]
    message = Message(params=query, body=body)
    now = dispatcher.clock.now()
    callback = CarrierCallback(
        id=uuid.uuid4(),
        carrier=carrier,
        query=query,
        headers={k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS},
        body=body,
        received_at=now,
        outcome="pending",
    )
    try:
        wire.decode_callback(message, await _credentials(session, dispatcher, carrier, message), now)
    except (SignatureInvalid, ValueError, KeyError, TypeError) as error:
        callback.outcome, callback.error, callback.processed_at = "rejected", str(error)[:500], now
        session.add(callback)
        return callback, wire.reject_message()
    session.add(callback)
    await session.flush()
    await schedule_timer(session, kind=APPLY_TIMER, key=str(callback.id), due_at=now)
    return callback, wire.ack_message()


async def apply(session: AsyncSession, dispatcher: Dispatcher, callback_id: uuid.UUID) -> CarrierCallback:
    callback = await session.scalar(select(CarrierCallback).where(CarrierCallback.id == callback_id).with_for_update())
    if callback is None:
        raise LookupError(f"no callback {callback_id}")
    wire = WIRES[callback.carrier]
    message = Message(params=callback.query, body=callback.body)
    callback.attempts += 1
    now = dispatcher.clock.now()
    try:
        report = wire.decode_callback(message, await _credentials(session, dispatcher, callback.carrier, message), now)
    except (SignatureInvalid, ValueError, KeyError, TypeError) as error:
        callback.outcome, callback.error, callback.processed_at = "rejected", str(error)[:500], now
        return callback
    refs = [Offer.shop_order_id == report.shop_order_id] if report.shop_order_id else []
    if report.waybill_id:
        refs.append(Offer.waybill_id == report.waybill_id)
    offer = (
        await session.scalar(select(Offer).where(Offer.carrier == callback.carrier, or_(*refs)).limit(1))
        if refs
        else None
    )
    if offer is None:
        callback.outcome, callback.error, callback.processed_at = "unknown", "no offer with this order or waybill", now
        return callback
    callback.delivery_id = offer.delivery_id
    try:
        async with session.begin_nested():
            delivery = await dispatcher.locked(session, offer.delivery_id)
            verdict = await dispatcher.apply(session, delivery, offer, report, "callback")
    except Exception as error:  # kept visible as `failed`, retried a few times, then left to ops to replay
        log.warning("callback failed", extra={"callback_id": str(callback.id), "error": repr(error)})
        callback.outcome, callback.error, callback.processed_at = "failed", repr(error)[:1000], now
        if callback.attempts < MAX_ATTEMPTS:
            due = now + timedelta(seconds=2**callback.attempts)
            await schedule_timer(session, kind=APPLY_TIMER, key=f"{callback.id}#{callback.attempts}", due_at=due)
        return callback
    callback.outcome, callback.error, callback.processed_at = verdict.value, None, now
    return callback


def callback_id(timer_key: str) -> uuid.UUID:
    return uuid.UUID(timer_key.split("#", 1)[0])
