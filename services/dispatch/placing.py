"""Creating a delivery for an order and placing it: quoting the store's carriers, ranking them by the store's
strategy, and offering it to the next wave (one carrier, or a broadcast). Each offer has its own `shop_order_id`,
unique at the carrier: a placement retried after a crash is refused as a duplicate and the existing waybill is
adopted by a query."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import accounts, deadlines, endings, events, fleet
from services.dispatch.carriers import OWN_FLEET
from services.dispatch.carriers.base import CarrierError, Op
from services.dispatch.consumed import DropoffContact, OrderToDeliver
from services.dispatch.desk import LIVE, Desk
from services.dispatch.domain import TERMINAL, DeliveryStatus
from services.dispatch.errors import NotWaiting
from services.dispatch.models import CarrierAccount, Delivery, Offer
from services.dispatch.strategies import rank, wave_size
from shared.timers import schedule_timer


async def start(session: AsyncSession, desk: Desk, order: OrderToDeliver) -> uuid.UUID | None:
    """Creates the order's delivery unless it has a live one; placing happens on a timer, after commit."""
    if order.fulfilment_mode != "delivery" or not order.address:
        return None
    store, address = order.store, order.address
    contact = order.contact or DropoffContact()
    now = desk.clock.now()
    values = {
        "id": uuid.uuid4(),
        "order_id": order.order_id,
        "merchant_id": order.merchant_id,
        "store_id": store.id,
        "customer_id": order.customer_id,
        "status": DeliveryStatus.created.value,
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
        await schedule_timer(session, kind=deadlines.PLACE_TIMER, key=str(created), due_at=now)
    return created


async def redispatch(session: AsyncSession, desk: Desk, previous: Delivery) -> uuid.UUID:
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
    created = await start(session, desk, order)
    if created is None:
        raise NotWaiting("The order already has a live delivery")
    return created


async def place(session: AsyncSession, desk: Desk, delivery: Delivery) -> None:
    """Offers the delivery to the next wave of ranked carriers; ends it `failed` when none is left."""
    if delivery.status in TERMINAL or delivery.offer_id is not None:
        return
    if not delivery.candidates:
        delivery.candidates = await _quotes(session, desk, delivery)
    usable = [c for c in delivery.candidates if "error" not in c]
    wave = wave_size(delivery.strategy) if delivery.placed_at is None else 1
    placed = 0
    while placed < wave and delivery.tried < len(usable):
        candidate = usable[delivery.tried]
        delivery.tried += 1
        if await _offer(session, desk, delivery, candidate):
            placed += 1
    if placed == 0 and not await desk.offers(session, delivery, LIVE):
        await endings.end(
            session, desk, delivery, DeliveryStatus.failed, reason="no carrier took the delivery", source="system"
        )
        return
    now = desk.clock.now()
    if delivery.placed_at is None:
        delivery.placed_at = now
        await events.publish(session, desk.clock, delivery, "created")
    await deadlines.arm_escalation(session, desk, delivery)
    await deadlines.watch(session, desk, delivery)


async def _quotes(session: AsyncSession, desk: Desk, delivery: Delivery) -> list[dict[str, Any]]:
    bound = await accounts.store_accounts(session, delivery.merchant_id, delivery.store_id)
    request = _request_fields(delivery, shop_order_id=f"{delivery.order_id}-q")

    async def quote(account: CarrierAccount) -> dict[str, Any]:
        entry: dict[str, Any] = {"carrier": account.carrier, "account_id": str(account.id)}
        try:
            creds = accounts.credentials(desk.vault, account)
            answer = await desk.carriers.call(account.carrier, creds, Op.quote, request)
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
        quoted.append(dict(fleet.quote(desk.settings, delivery)))
    return rank([c for c in quoted if "error" not in c], strategy) + [c for c in quoted if "error" in c]


def _request_fields(delivery: Delivery, **extra: Any) -> dict[str, Any]:
    pickup, dropoff = delivery.pickup, delivery.dropoff
    return {
        "sender_name": pickup.get("name"), "sender_phone": pickup.get("phone"),
        "sender_address": pickup.get("address"), "sender_lat": pickup.get("lat"), "sender_lng": pickup.get("lng"),
        "receiver_name": dropoff.get("name"), "receiver_phone": dropoff.get("phone"),
        "receiver_address": dropoff.get("address"), "receiver_lat": dropoff.get("lat"),
        "receiver_lng": dropoff.get("lng"), "cargo_value_fen": delivery.cargo_value_fen,
        "remark": delivery.remark, "tip_fen": delivery.tip_fen, **extra,
    }  # fmt: skip


async def _offer(session: AsyncSession, desk: Desk, delivery: Delivery, candidate: dict[str, Any]) -> bool:
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
        placed_at=desk.clock.now(),
    )
    session.add(offer)
    await session.flush()
    if offer.carrier == OWN_FLEET:
        if await fleet.offer_next(session, desk.clock, desk.settings, delivery, offer):
            return True
        return _failed(desk, offer, "no own rider online")
    account = await session.get_one(CarrierAccount, offer.account_id)
    creds = accounts.credentials(desk.vault, account)
    # The quote's token and amounts go back with the placement (UU refuses an order without its quoted price).
    request = _request_fields(
        delivery,
        shop_order_id=offer.shop_order_id,
        token=candidate.get("token"),
        fee_fen=candidate.get("fee_fen"),
        total_fen=candidate.get("total_fen"),
    )
    try:
        answer = await desk.carriers.call(offer.carrier, creds, Op.place, request)
    except CarrierError as error:
        # Placed before a crash rolled our record back? The carrier knows the shop_order_id: adopt its waybill.
        try:
            answer = await desk.carriers.call(offer.carrier, creds, Op.query, {"shop_order_id": offer.shop_order_id})
        except (CarrierError, httpx.HTTPError):
            return _failed(desk, offer, str(error))
    except httpx.HTTPError as error:
        return _failed(desk, offer, f"unreachable: {error!r}")
    offer.waybill_id = str(answer.get("waybill_id") or "") or None
    offer.fee_fen = int(answer.get("fee_fen") or offer.fee_fen or 0)
    delivery.pickup_code = answer.get("pickup_code") or delivery.pickup_code
    delivery.finish_code = answer.get("finish_code") or delivery.finish_code
    return True


def _failed(desk: Desk, offer: Offer, error: str) -> bool:
    offer.status, offer.error, offer.ended_at = "failed", error[:500], desk.clock.now()
    return False
