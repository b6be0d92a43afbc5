"""Deliveries, from an order event to an end: quoting the store's carriers, ranking them by the store's strategy,
offering (one carrier, or a broadcast wave), applying status reports through the guard, escalation (tip, then the
next carrier), cancellation with the fee previewed and recorded, and tips.

Every carrier call that changes the delivery happens inside the caller's transaction with the delivery row locked
(`FOR UPDATE`), so two reports about one delivery are applied one after the other; tracking, which only reads a
position, asks the carrier with no transaction open and records the answer conditionally afterwards. Each offer
has its own `shop_order_id`, unique at the carrier: a placement retried after a crash is refused as a duplicate
and the existing waybill is adopted by a query. Loser cancellations and escalation run on durable timers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import Request
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import accounts, events, fleet
from services.dispatch.carriers import OWN_FLEET, WIRES
from services.dispatch.carriers.base import CarrierError, NotSupported, Op, Update
from services.dispatch.carriers.client import CarrierClient
from services.dispatch.consumed import DropoffContact, OrderToDeliver
from services.dispatch.domain import BEFORE_PICKUP, EVENT_NAME, EXCEPTIONAL, TERMINAL, DeliveryStatus, Verdict, judge
from services.dispatch.errors import (
    CarrierRefused,
    CarrierUnavailable,
    DeliveryEnded,
    DeliveryNotFound,
    NotWaiting,
    TipNotHigher,
)
from services.dispatch.models import CarrierAccount, Delivery, DeliveryChange, Offer
from services.dispatch.settings import DispatchSettings
from services.dispatch.strategies import rank, wave_size
from shared.clock import Clock
from shared.geo import distance_m
from shared.timers import cancel_timer, schedule_timer
from shared.vault import Vault

log = logging.getLogger(__name__)

PLACE_TIMER = "delivery.place"
ESCALATE_TIMER = "delivery.escalate"
RECONCILE_TIMER = "delivery.reconcile"
CANCEL_OFFER_TIMER = "offer.cancel"

LIVE = "placed"
# Ends by which a carrier gives up an offer nobody has won yet (any other report claims the delivery for it).
GAVE_UP = frozenset({DeliveryStatus.cancelled, DeliveryStatus.failed, DeliveryStatus.pickup_failed})
S = DeliveryStatus


def _waiting(delivery: Delivery) -> bool:
    """Waiting for a rider: never taken, or taken and given back (the carrier's rider withdrew)."""
    return delivery.status == S.created.value and delivery.ended_at is None


def app_dispatcher(request: Request) -> Dispatcher:
    """The app's dispatcher (made in `create_app`), for the routers."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


class Dispatcher:
    def __init__(self, *, settings: DispatchSettings, clock: Clock, carriers: CarrierClient, vault: Vault) -> None:
        self.settings = settings
        self.clock = clock
        self.carriers = carriers
        self.vault = vault

    # --- reading ----------------------------------------------------------------------------------------------

    async def locked(self, session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
        delivery = await session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
        if delivery is None:
            raise DeliveryNotFound("No such delivery")
        return delivery

    async def account(self, session: AsyncSession, offer: Offer) -> CarrierAccount | None:
        """The carrier account an offer was placed with (none for the own fleet)."""
        return await session.get_one(CarrierAccount, offer.account_id) if offer.account_id is not None else None

    async def offers(self, session: AsyncSession, delivery: Delivery, status: str | None = None) -> list[Offer]:
        stmt = select(Offer).where(Offer.delivery_id == delivery.id).order_by(Offer.placed_at, Offer.id)
        if status is not None:
            stmt = stmt.where(Offer.status == status)
        return list((await session.scalars(stmt)).all())

    # --- creating ---------------------------------------------------------------------------------------------

    async def start(self, session: AsyncSession, order: OrderToDeliver) -> uuid.UUID | None:
        """Creates the order's delivery unless it has a live one; placing happens on a timer, after commit."""
        if order.fulfilment_mode != "delivery" or not order.address:
            return None
        store, address = order.store, order.address
        contact = order.contact or DropoffContact()
        now = self.clock.now()
        values = {
            "id": uuid.uuid4(),
            "order_id": order.order_id,
            "merchant_id": order.merchant_id,
            "store_id": store.id,
            "customer_id": order.customer_id,
            "status": S.created.value,
            "strategy": (order.dispatch.strategy if order.dispatch else None) or {"kind": "cheapest"},
            "candidates": [],
            "tried": 0,
            "pickup": store.model_dump(include={"name", "phone", "address", "lat", "lng"}),
            "dropoff": {
                "name": contact.name,
                "phone": contact.phone,
                "address": address.text,
                "lat": address.lat,
                "lng": address.lng,
            },
            "cargo_value_fen": order.amounts.items_fen if order.amounts else 0,
            "remark": order.note,
            "tip_fen": 0,
            "cancel_fee_fen": 0,
            "created_at": now,
            "updated_at": now,
        }
        created = await session.scalar(
            insert(Delivery)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["order_id"], index_where=Delivery.ended_at.is_(None))
            .returning(Delivery.id)
        )
        if created is not None:
            await schedule_timer(session, kind=PLACE_TIMER, key=str(created), due_at=now)
        return created

    async def redispatch(self, session: AsyncSession, previous: Delivery) -> uuid.UUID:
        """A new delivery for the order of an ended one (the merchant's choice after a carrier cancelled)."""
        if previous.ended_at is None:
            raise NotWaiting("The order's delivery is still live")
        order = OrderToDeliver.model_validate(
            {
                "order_id": previous.order_id,
                "merchant_id": previous.merchant_id,
                "customer_id": previous.customer_id,
                "fulfilment_mode": "delivery",
                "store": {"id": previous.store_id, **previous.pickup},
                "address": {"text": previous.dropoff.get("address"), **previous.dropoff},
                "contact": previous.dropoff,
                "dispatch": {"strategy": previous.strategy},
                "amounts": {"items_fen": previous.cargo_value_fen},
                "note": previous.remark,
            }
        )
        created = await self.start(session, order)
        if created is None:
            raise NotWaiting("The order already has a live delivery")
        return created

    # --- placing ----------------------------------------------------------------------------------------------

    async def place(self, session: AsyncSession, delivery: Delivery) -> None:
        """Offers the delivery to the next wave of ranked carriers; ends it `failed` when none is left."""
        if delivery.status in TERMINAL or delivery.offer_id is not None:
            return
        if not delivery.candidates:
            delivery.candidates = await self._quotes(session, delivery)
        usable = [c for c in delivery.candidates if "error" not in c]
        wave = wave_size(delivery.strategy) if delivery.placed_at is None else 1
        placed = 0
        while placed < wave and delivery.tried < len(usable):
            candidate = usable[delivery.tried]
            delivery.tried += 1
            if await self._offer(session, delivery, candidate):
                placed += 1
        if placed == 0 and not await self.offers(session, delivery, LIVE):
            await self.end(session, delivery, S.failed, reason="no carrier took the delivery", source="system")
            return
        now = self.clock.now()
        if delivery.placed_at is None:
            delivery.placed_at = now
            await events.publish(session, self.clock, delivery, "created")
        await self._arm_escalation(session, delivery)
        await self._watch(session, delivery)

    async def _quotes(self, session: AsyncSession, delivery: Delivery) -> list[dict[str, Any]]:
        bound = await accounts.store_accounts(session, delivery.merchant_id, delivery.store_id)
        request = self.request_fields(delivery, shop_order_id=f"{delivery.order_id}-q")

        async def quote(account: CarrierAccount) -> dict[str, Any]:
            entry: dict[str, Any] = {"carrier": account.carrier, "account_id": str(account.id)}
            try:
                creds = accounts.credentials(self.vault, account)
                answer = await self.carriers.call(account.carrier, creds, Op.quote, request)
            except (CarrierError, httpx.HTTPError) as error:
                return entry | {"error": str(error)[:300]}
            return entry | {
                "fee_fen": int(answer.get("fee_fen", 0)),
                "eta_seconds": int(answer.get("eta_seconds", 0)),
                "distance_m": int(answer.get("distance_m", 0)),
                "token": str(answer.get("token") or ""),
                **({"total_fen": int(answer["total_fen"])} if answer.get("total_fen") is not None else {}),
            }

        quoted = list(await asyncio.gather(*(quote(account) for account in bound)))
        strategy = delivery.strategy
        if strategy.get("kind") == "own_fleet_first" or OWN_FLEET in (strategy.get("carriers") or []):
            quoted.append(dict(fleet.quote(self.settings, delivery)))
        return rank([c for c in quoted if "error" not in c], strategy) + [c for c in quoted if "error" in c]

    def request_fields(self, delivery: Delivery, **extra: Any) -> dict[str, Any]:
        pickup, dropoff = delivery.pickup, delivery.dropoff
        return {
            "sender_name": pickup.get("name"), "sender_phone": pickup.get("phone"),
            "sender_address": pickup.get("address"), "sender_lat": pickup.get("lat"), "sender_lng": pickup.get("lng"),
            "receiver_name": dropoff.get("name"), "receiver_phone": dropoff.get("phone"),
            "receiver_address": dropoff.get("address"), "receiver_lat": dropoff.get("lat"),
            "receiver_lng": dropoff.get("lng"), "cargo_value_fen": delivery.cargo_value_fen,
            "remark": delivery.remark, "tip_fen": delivery.tip_fen, **extra,
        }  # fmt: skip

    async def _offer(self, session: AsyncSession, delivery: Delivery, candidate: dict[str, Any]) -> bool:
        sequence = await session.scalar(
            select(func.count()).select_from(Offer).join(Delivery).where(Delivery.order_id == delivery.order_id)
        )
        offer = Offer(
            id=uuid.uuid4(),
            delivery_id=delivery.id,
            carrier=candidate["carrier"],
            account_id=uuid.UUID(candidate["account_id"]) if candidate.get("account_id") else None,
            shop_order_id=f"{delivery.order_id}-{int(sequence or 0) + 1}",
            status=LIVE,
            quote_fen=candidate.get("fee_fen"),
            fee_fen=candidate.get("fee_fen"),
            tip_fen=delivery.tip_fen,
            eta_seconds=candidate.get("eta_seconds"),
            placed_at=self.clock.now(),
        )
        session.add(offer)
        await session.flush()
        if offer.carrier == OWN_FLEET:
            if await fleet.offer_next(session, self.clock, self.settings, delivery, offer):
                return True
            return self._failed(offer, "no own rider online")
        account = await session.get_one(CarrierAccount, offer.account_id)
        creds = accounts.credentials(self.vault, account)
        # The quote's token and amounts go back with the placement (UU refuses an order without its quoted price).
        request = self.request_fields(
            delivery,
            shop_order_id=offer.shop_order_id,
            token=candidate.get("token"),
            fee_fen=candidate.get("fee_fen"),
            total_fen=candidate.get("total_fen"),
        )
        try:
            answer = await self.carriers.call(offer.carrier, creds, Op.place, request)
        except CarrierError as error:
            # Placed before a crash rolled our record back? The carrier knows the shop_order_id: adopt its waybill.
            try:
                answer = await self.carriers.call(
                    offer.carrier, creds, Op.query, {"shop_order_id": offer.shop_order_id}
                )
            except (CarrierError, httpx.HTTPError):
                return self._failed(offer, str(error))
        except httpx.HTTPError as error:
            return self._failed(offer, f"unreachable: {error!r}")
        offer.waybill_id = str(answer.get("waybill_id") or "") or None
        offer.fee_fen = int(answer.get("fee_fen") or offer.fee_fen or 0)
        delivery.pickup_code = answer.get("pickup_code") or delivery.pickup_code
        delivery.finish_code = answer.get("finish_code") or delivery.finish_code
        return True

    def _failed(self, offer: Offer, error: str) -> bool:
        offer.status, offer.error, offer.ended_at = "failed", error[:500], self.clock.now()
        return False

    async def _watch(self, session: AsyncSession, delivery: Delivery) -> None:
        """(Re)arms reconciliation: a delivery silent this long gets queried."""
        due = self.clock.now() + timedelta(minutes=self.settings.silent_minutes)
        await schedule_timer(session, kind=RECONCILE_TIMER, key=str(delivery.id), due_at=due)

    # --- status reports -----------------------------------------------------------------------------------------

    async def apply(
        self, session: AsyncSession, delivery: Delivery, offer: Offer, report: Update, source: str
    ) -> Verdict:
        """Records the report (a repeat of an already recorded one is a duplicate) and applies it through the guard.
        The caller holds the delivery's row lock."""
        rider_key = (report.rider or {}).get("phone") or (report.rider or {}).get("id") or ""
        change_id = await session.scalar(
            insert(DeliveryChange)
            .values(
                delivery_id=delivery.id,
                offer_id=offer.id,
                source=source,
                code=report.code,
                status=report.status.value if report.status else None,
                rider_key=rider_key,
                action_time=report.action_time,
                verdict="pending",
                reason=report.reason,
                recorded_at=self.clock.now(),
            )
            .on_conflict_do_nothing()
            .returning(DeliveryChange.id)
        )
        if change_id is None:
            return Verdict.duplicate
        verdict = await self._apply(session, delivery, offer, report)
        await session.execute(update(DeliveryChange).where(DeliveryChange.id == change_id).values(verdict=verdict))
        return verdict

    async def _apply(self, session: AsyncSession, delivery: Delivery, offer: Offer, report: Update) -> Verdict:
        status = report.status
        if report.waybill_id and not offer.waybill_id:
            offer.waybill_id = report.waybill_id
        if status is None:  # an exception that changes nothing but must be heard
            if delivery.status in TERMINAL:
                return Verdict.refused
            delivery.reason = report.reason
            await events.publish(session, self.clock, delivery, "exception", carrier_code=report.code)
            return Verdict.applied
        if delivery.offer_id is not None and delivery.offer_id != offer.id:
            await self._drop(session, offer, "lost")  # it accepted too late: make sure it is cancelled
            return Verdict.refused
        if delivery.offer_id is None:
            if status is S.created:
                return Verdict.duplicate
            # An end that names a rider came after its rider took it (a queried state can skip the acceptance): it
            # wins, then ends, like a carrier's cancellation after acceptance.
            if status in GAVE_UP and not report.rider:
                return await self._offer_ended(session, delivery, offer, report)
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
            for other in await self.offers(session, delivery, LIVE):
                await self._drop(session, other, "lost")
        same_rider = not report.rider or (delivery.rider or {}).get("phone") == report.rider.get("phone")
        verdict = judge(
            DeliveryStatus(delivery.status),
            status,
            last_action_at=delivery.last_action_at,
            action_time=report.action_time,
            same_rider=same_rider,
        )
        if verdict is Verdict.applied:
            await self._move(session, delivery, report)
        return verdict

    async def _move(self, session: AsyncSession, delivery: Delivery, report: Update) -> None:
        status = report.status
        assert status is not None
        now = self.clock.now()
        delivery.status = status.value
        delivery.last_action_at = report.action_time
        delivery.updated_at = now
        delivery.waybill_id = delivery.waybill_id or report.waybill_id or None
        if report.rider:
            delivery.rider = report.rider
        if report.rider_lat is not None and report.rider_lng is not None:
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
            await events.publish(session, self.clock, delivery, "rider_unassigned", previous_rider=withdrawn)
            await self._arm_escalation(session, delivery)
            await self._watch(session, delivery)
            return
        if status in EXCEPTIONAL and EVENT_NAME[status] != "exception":  # e.g. a pickup failure: notice + end
            await events.publish(session, self.clock, delivery, "exception", carrier_code=report.code)
        if status in TERMINAL:
            await self._close(session, delivery)
            winner = await session.get(Offer, delivery.offer_id) if delivery.offer_id else None
            if winner is not None and winner.ended_at is None:
                winner.ended_at = now
        else:
            await self._watch(session, delivery)
        await events.publish(session, self.clock, delivery, EVENT_NAME[status], carrier_code=report.code)

    async def _offer_ended(self, session: AsyncSession, delivery: Delivery, offer: Offer, report: Update) -> Verdict:
        """A carrier gave up (or failed to create) before any rider took the delivery: try the next one."""
        if offer.status != LIVE:
            return Verdict.duplicate
        offer.status = "failed" if report.status is S.failed else "cancelled"
        offer.error, offer.ended_at = report.reason, self.clock.now()
        if not await self.offers(session, delivery, LIVE):
            await self.place(session, delivery)
        return Verdict.applied

    async def _drop(self, session: AsyncSession, offer: Offer, status: str) -> None:
        """Marks a live offer as lost (or withdrawn) and has it cancelled at the carrier on a timer, fee recorded."""
        if offer.status not in (LIVE, "lost"):
            return
        offer.status = status
        if offer.carrier == OWN_FLEET:
            await fleet.withdraw(session, self.clock, offer.delivery_id)
            offer.ended_at = self.clock.now()
            return
        await schedule_timer(session, kind=CANCEL_OFFER_TIMER, key=str(offer.id), due_at=self.clock.now())

    async def _close(self, session: AsyncSession, delivery: Delivery) -> None:
        now = self.clock.now()
        delivery.ended_at = delivery.ended_at or now
        for kind in (ESCALATE_TIMER, RECONCILE_TIMER):
            await cancel_timer(session, kind=kind, key=str(delivery.id), now=now)
        for offer in await self.offers(session, delivery, LIVE):
            await self._drop(session, offer, "lost")

    async def end(self, session: AsyncSession, delivery: Delivery, status: S, *, reason: str, source: str) -> None:
        """Ends the delivery by our own decision (merchant cancel, no carrier, order cancelled)."""
        now = self.clock.now()
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
        await self._close(session, delivery)
        await events.publish(session, self.clock, delivery, EVENT_NAME[status], by=source)

    # --- cancelling ---------------------------------------------------------------------------------------------

    async def cancel_fee(self, delivery: Delivery, offer: Offer, account: CarrierAccount | None) -> int:
        """What cancelling this offer would cost now: the carrier's own preview, or its published rule. Needs no
        session: a preview may be asked with no transaction open."""
        if offer.carrier == OWN_FLEET or account is None:
            return 0
        wire = WIRES[offer.carrier]
        won = delivery.offer_id == offer.id
        if Op.preview_cancel in wire.paths:
            answer = await self._call(account, Op.preview_cancel, self._offer_ref(offer, reason_id=1))
            return int(answer.get("deduct_fen") or 0)
        return wire.cancel_fee_fen(
            accepted_at=delivery.accepted_at if won else None,
            arrived_at=delivery.arrived_at if won else None,
            picked_up=won and delivery.status not in BEFORE_PICKUP,
            now=self.clock.now(),
        )

    async def cancel_offer(self, session: AsyncSession, delivery: Delivery, offer: Offer, reason: str) -> int:
        """Cancels one offer at its carrier; records and returns the fee the carrier deducted."""
        if offer.cancel_fee_fen is not None:
            return 0
        account = await self.account(session, offer)
        fee = await self.cancel_fee(delivery, offer, account)
        if offer.carrier != OWN_FLEET and account is not None:
            answer = await self._call(account, Op.cancel, self._offer_ref(offer, reason_id=1, reason=reason))
            fee = int(answer.get("deduct_fen", fee) or 0)
        else:
            await fleet.withdraw(session, self.clock, delivery.id)
        offer.cancel_fee_fen = fee
        offer.ended_at = offer.ended_at or self.clock.now()
        if offer.status == LIVE:
            offer.status = "cancelled"
        delivery.cancel_fee_fen += fee
        return fee

    async def cancel(self, session: AsyncSession, delivery: Delivery, *, reason: str, by: str) -> None:
        if delivery.status in TERMINAL:
            raise DeliveryEnded(f"The delivery is already {delivery.status}")
        if delivery.status not in BEFORE_PICKUP:
            raise CarrierRefused("The rider has picked the goods up: the carrier no longer takes a cancellation")
        live = await self.offers(session, delivery, LIVE)
        winner = await session.get(Offer, delivery.offer_id) if delivery.offer_id else None
        for offer in [*live, *([winner] if winner else [])]:
            await self.cancel_offer(session, delivery, offer, reason)
        await self.end(session, delivery, S.cancelled, reason=reason, source=by)

    async def cancel_loser(self, session: AsyncSession, offer_id: uuid.UUID) -> None:
        offer = await session.get(Offer, offer_id)
        if offer is None:
            return
        delivery = await self.locked(session, offer.delivery_id)
        try:
            async with session.begin_nested():
                await self.cancel_offer(session, delivery, offer, "another carrier took the delivery")
        except CarrierRefused as refusal:
            # Too late to cancel (its rider already has the goods, say): left visible for ops to settle by hand.
            offer.error = f"cancel refused: {refusal}"[:500]
            log.warning("losing offer not cancelled", extra={"offer_id": str(offer.id), "error": str(refusal)})

    def _offer_ref(self, offer: Offer, **extra: Any) -> dict[str, Any]:
        return {"shop_order_id": offer.shop_order_id, "waybill_id": offer.waybill_id, **extra}

    async def _call(self, account: CarrierAccount, op: Op, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.carriers.call(account.carrier, accounts.credentials(self.vault, account), op, fields)
        except CarrierError as error:
            raise CarrierRefused(f"{account.carrier} refused: {error.message}", carrier_code=error.code) from error
        except httpx.HTTPError as error:
            raise CarrierUnavailable(f"{account.carrier} could not be reached: {error!r}") from error

    # --- tips and escalation ------------------------------------------------------------------------------------

    async def add_tip(self, session: AsyncSession, delivery: Delivery, tip_fen: int, *, by: str) -> None:
        if not _waiting(delivery):
            raise NotWaiting("Tips are only added while the delivery waits for a rider")
        if tip_fen <= delivery.tip_fen:
            raise TipNotHigher(f"The tip is already {delivery.tip_fen} fen; a new one must be higher")
        for offer in await self._looking(session, delivery):
            if offer.carrier == OWN_FLEET or offer.account_id is None:
                offer.tip_fen = tip_fen
                continue
            account = await session.get_one(CarrierAccount, offer.account_id)
            try:
                await self._call(account, Op.add_tip, self._offer_ref(offer, tip_fen=tip_fen))
            except NotSupported:
                continue
            offer.tip_fen = tip_fen
        delivery.tip_fen, delivery.updated_at = tip_fen, self.clock.now()
        await self._record(session, delivery, code="tip", reason=f"tip raised to {tip_fen} fen by {by}")

    async def escalate(self, session: AsyncSession, delivery: Delivery) -> None:
        """No rider yet (none ever came, or the carrier's rider withdrew): raise the tip a step (strictly higher,
        capped); once capped, give the looking carrier up and offer the next one."""
        if not _waiting(delivery):
            return
        cap = int(delivery.strategy.get("max_tip_fen", 0))
        looking = await self._looking(session, delivery)
        tippable = [o for o in looking if o.carrier != OWN_FLEET and Op.add_tip in WIRES[o.carrier].paths]
        usable = [c for c in delivery.candidates if "error" not in c]
        if tippable and delivery.tip_fen < cap:
            await self.add_tip(
                session, delivery, min(delivery.tip_fen + self.settings.tip_step_fen, cap), by="escalation"
            )
        elif delivery.tried < len(usable):
            for offer in looking:
                await self.cancel_offer(session, delivery, offer, "no rider in time: re-dispatching")
            if delivery.offer_id is not None:
                await self._release(session, delivery)
            await self._record(session, delivery, code="redispatch", reason="no rider in time: next carrier")
            await self.place(session, delivery)
            return
        else:
            await self._record(session, delivery, code="no_rider", reason="no rider yet and no other carrier")
        await self._arm_escalation(session, delivery)

    async def _looking(self, session: AsyncSession, delivery: Delivery) -> list[Offer]:
        """The offers whose carriers are looking for a rider: the live ones, or the winner whose rider withdrew."""
        if delivery.offer_id is not None:
            return [await session.get_one(Offer, delivery.offer_id)]
        return await self.offers(session, delivery, LIVE)

    async def _release(self, session: AsyncSession, delivery: Delivery) -> None:
        """The carrier that won (cancelled by now) is given up: the delivery is free for the next offer, and a late
        report of that carrier is refused like any lost offer's."""
        winner = await session.get_one(Offer, delivery.offer_id)
        winner.status = "cancelled"
        delivery.offer_id, delivery.carrier, delivery.waybill_id, delivery.fee_fen = None, None, None, None
        delivery.pickup_code, delivery.finish_code, delivery.last_action_at = None, None, None

    async def _arm_escalation(self, session: AsyncSession, delivery: Delivery) -> None:
        """The next escalation round, the store's `escalate_after_minutes` from now."""
        minutes = float(delivery.strategy.get("escalate_after_minutes") or 5)
        due = self.clock.now() + timedelta(minutes=minutes)
        await schedule_timer(session, kind=ESCALATE_TIMER, key=str(delivery.id), due_at=due)

    async def _record(self, session: AsyncSession, delivery: Delivery, *, code: str, reason: str) -> None:
        now = self.clock.now()
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

    # --- reconciliation and tracking -----------------------------------------------------------------------------

    async def reconcile(self, session: AsyncSession, delivery: Delivery) -> None:
        """Asks the carriers about a delivery they have been silent about, and applies what they say."""
        if delivery.ended_at is not None:
            return
        offers = (
            [await session.get_one(Offer, delivery.offer_id)]
            if delivery.offer_id
            else await self.offers(session, delivery, LIVE)
        )
        for offer in offers:
            if offer.carrier == OWN_FLEET or offer.account_id is None:
                continue
            try:
                report = await self.ask(session, offer)
            except (CarrierRefused, CarrierUnavailable) as error:
                log.warning("reconciliation query failed", extra={"delivery_id": str(delivery.id), "error": str(error)})
                continue
            await self.apply(session, delivery, offer, report, "poll")
        if delivery.ended_at is None:
            await self._watch(session, delivery)

    async def ask(self, session: AsyncSession, offer: Offer) -> Update:
        """What the carrier says about an offer now (its status query), as a report."""
        account = await session.get_one(CarrierAccount, offer.account_id)
        answer = await self._call(account, Op.query, self._offer_ref(offer))
        return WIRES[offer.carrier].update_from({"shop_order_id": offer.shop_order_id, **answer})

    async def track(self, session: AsyncSession, delivery: Delivery) -> Offer | None:
        """Refreshes the rider's position and ETA from what we know: the own rider's last report, or a carrier's
        position under 30 s old. Returns the winning offer when its carrier has to be asked instead (`locate`,
        outside any transaction)."""
        if delivery.ended_at is not None or delivery.offer_id is None or delivery.status == S.created.value:
            return None
        now = self.clock.now()
        if delivery.carrier == OWN_FLEET:
            await fleet.track(session, self.settings, delivery, now)
            return None
        if delivery.rider_located_at is not None and now - delivery.rider_located_at < timedelta(seconds=30):
            return None
        offer = await session.get_one(Offer, delivery.offer_id)
        return offer if offer.account_id is not None else None

    async def locate(self, session: AsyncSession, delivery: Delivery, offer: Offer) -> None:
        """Asks the offer's carrier where its rider is, then records the answer in a transaction of its own, if the
        offer still carries the delivery. `session` must have no transaction open: a slow carrier holds neither
        the delivery's row nor a connection."""
        async with session.begin():
            account = await session.get_one(CarrierAccount, offer.account_id)
        try:
            answer = await self._call(account, Op.locate, self._offer_ref(offer))
        except (CarrierRefused, CarrierUnavailable, NotSupported):
            return
        now = self.clock.now()
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
            position["eta_at"] = now + timedelta(seconds=metres / self.settings.own_fleet_speed_mps)
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
