"""The callback apply worker: kept callbacks (`outcome = 'pending'`) are a work queue of their own.

A round claims up to a batch of them in arrival order (`seq`) with `FOR UPDATE SKIP LOCKED` (so workers in several
replicas never take the same one), loads their offers with their deliveries (locked, in id order, so two rounds never
deadlock) and accounts in one statement, and applies each delivery's callbacks in arrival order, recording
every outcome (in one statement) in the round's one transaction: a crash before it commits leaves them all pending, to
be taken again, and after it every effect and outcome is there, once. A round applies its callbacks without savepoints;
only when one of them fails is the round undone and taken again with a savepoint per callback (`apply_pending`). A
callback of a delivery that has an earlier one pending in another worker's hands waits for it (a later round takes it).

The worker sleeps until a callback is kept (the `carrier_callback` insert trigger notifies `CHANNEL`, delivered once the
intake commits) or `poll_seconds` passed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.dispatch import callbacks
from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import Credentials
from services.dispatch.carriers.client import CallsDeferred, calls_allowed
from services.dispatch.models import CarrierAccount, CarrierCallback, Delivery, Offer
from services.dispatch.service import Dispatcher
from shared.db import work_in_rounds

log = logging.getLogger(__name__)

CHANNEL = "songda_callback"
# How soon to look again when a round left callbacks behind another worker's earlier one.
DEFERRED_RETRY_SECONDS = 0.2

# A round's statements, built once (building a statement cost more CPU than running it). Each names its callbacks
# `PENDING`, written out, so that a prepared statement's generic plan can use the partial index of pending callbacks.
# The oldest pending callbacks, up to a batch, read as rows, not ORM objects (building those was an eighth of the
# worker's CPU); recorded by one statement (`callbacks.settle_all`).
_CLAIM = (
    select(*(getattr(CarrierCallback, name) for name in callbacks.Kept._fields))
    .where(CarrierCallback.outcome == callbacks.PENDING)
    .order_by(CarrierCallback.seq)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True)
)
# The claimed callbacks' offers, each with its delivery and its account (if any), the deliveries locked in id order (so
# two rounds never deadlock): one statement, where an offer's, an account's and a delivery's had been one each.
_OFFERS_LOCKING_DELIVERIES = (
    select(Offer, Delivery, CarrierAccount)
    .join(Delivery, Delivery.id == Offer.delivery_id)
    .outerjoin(CarrierAccount, CarrierAccount.id == Offer.account_id)
    .where(Offer.id.in_(bindparam("ids", expanding=True)))
    .order_by(Delivery.id)
    .with_for_update(of=Delivery)
)
_FIRST_PENDING = (
    select(CarrierCallback.delivery_id, func.min(CarrierCallback.seq))
    .where(
        CarrierCallback.delivery_id.in_(bindparam("deliveries", expanding=True)),
        CarrierCallback.outcome == callbacks.PENDING,
        CarrierCallback.id.not_in(bindparam("ours", expanding=True)),
    )
    .group_by(CarrierCallback.delivery_id)
)


@dataclass
class CallbackQueue:
    dispatcher: Dispatcher
    sessionmaker: async_sessionmaker[AsyncSession]
    batch_size: int
    poll_seconds: float
    deferred: int = 0

    async def run(self, engine: AsyncEngine) -> None:
        await work_in_rounds(
            engine, CHANNEL, self.apply_pending, batch_size=self.batch_size, idle_seconds=self._idle_seconds
        )

    async def _idle_seconds(self) -> float:
        return DEFERRED_RETRY_SECONDS if self.deferred else self.poll_seconds

    async def apply_pending(self) -> int:
        """Applies one batch of pending callbacks; returns how many were claimed (those deferred included). The
        batch is applied without a savepoint per callback (each one was two statements, under names that change
        every time, so prepared anew, and they pushed the round's other statements out of the driver's statement
        cache); when one fails, the whole round is undone and taken again, each callback in a savepoint of its own,
        so the failure is recorded and the others' effects kept. A round without savepoints calls no carrier (a call
        cannot be undone with the round: a replacement order placed twice): a round holding a callback of a carrier
        whose status is queried is isolated from its start, and a callback that needs another call (the next carrier
        after one gave up) stops its round before the call, and the round is taken again."""
        try:
            return await self._round(isolated=False)
        except CallsDeferred:
            pass
        except Exception as error:
            log.info("a callback failed in a round: taken again, each in a savepoint", extra={"error": repr(error)})
        return await self._round(isolated=True)

    async def _round(self, *, isolated: bool) -> int:
        async with self.sessionmaker() as session, session.begin():
            claimed = [callbacks.Kept(*row) for row in await session.execute(_CLAIM, {"batch": self.batch_size})]
            # A carrier whose callbacks prove nothing has its status queried for each: a call, so such a round is
            # isolated from its start (taken without savepoints, it would only be stopped at the call and taken again).
            isolated = isolated or any(_queried(c.carrier) for c in claimed)
            allowed = calls_allowed.set(isolated)
            try:
                self.deferred = await self._apply(session, claimed, isolated=isolated) if claimed else 0
            finally:
                calls_allowed.reset(allowed)
        return len(claimed)

    async def _apply(self, session: AsyncSession, claimed: Sequence[callbacks.Kept], *, isolated: bool) -> int:
        dispatcher = self.dispatcher
        offers: dict[uuid.UUID, Offer] = {}
        accounts: dict[uuid.UUID, CarrierAccount] = {}
        deliveries: dict[uuid.UUID, Delivery] = {}
        offer_ids = list({c.offer_id for c in claimed if c.offer_id})
        if offer_ids:
            for offer, delivery, account in await session.execute(_OFFERS_LOCKING_DELIVERIES, {"ids": offer_ids}):
                offers[offer.id], deliveries[delivery.id] = offer, delivery
                if account is not None:
                    accounts[account.id] = account
        opened: dict[uuid.UUID, Credentials] = {}  # each account's secrets, opened once a round, not per callback
        delivery_ids = sorted(deliveries)
        waiting = await _held_elsewhere(session, delivery_ids, [c.id for c in claimed])
        results = []
        deferred = 0
        for callback in claimed:
            offer = offers.get(callback.offer_id) if callback.offer_id else None
            delivery = deliveries.get(offer.delivery_id) if offer is not None else None
            if delivery is not None and waiting.get(delivery.id, callback.seq) < callback.seq:
                deferred += 1
                continue
            account = accounts.get(offer.account_id) if offer is not None and offer.account_id else None
            result = await callbacks.applied(
                session, dispatcher, callback, offer, account, delivery, isolated=isolated, opened=opened
            )
            if isinstance(result, Exception) and delivery is not None and offer is not None:
                # Its savepoint rolled back: what it had changed is expired, and read again for the next ones.
                await session.refresh(delivery)
                await session.refresh(offer)
            results.append((callback, result))
        await callbacks.settle_all(session, dispatcher, results)
        return deferred


def _queried(carrier: str) -> bool:
    """Whether the carrier's callbacks are confirmed by a status query; a carrier no wire knows (any more) counts as
    one, so that its callback fails in a savepoint of its own, recorded, rather than stopping every round."""
    wire = WIRES.get(carrier)
    return wire is None or wire.confirm_by_query


async def _held_elsewhere(
    session: AsyncSession, delivery_ids: list[uuid.UUID], ours: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """For each of these deliveries, the place in line (`seq`) of its first pending callback that this round did not
    claim (another worker holds it, or it came after the batch)."""
    if not delivery_ids:
        return {}
    rows = await session.execute(_FIRST_PENDING, {"deliveries": delivery_ids, "ours": ours})
    return {delivery_id: first for delivery_id, first in rows}
