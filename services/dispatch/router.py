"""Routes for deliveries: what customers and merchants see (status, rider, tracking, history), and what merchants do
(re-dispatch after a carrier gave up, add a tip, preview and cancel)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import views
from services.dispatch.desk import LIVE
from services.dispatch.models import Delivery, Offer
from services.dispatch.schemas import (
    CancelCommand,
    CancelPreview,
    DeliveryPage,
    DeliveryRead,
    Redispatch,
    TipCommand,
    Tracking,
)
from services.dispatch.service import app_dispatcher
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.contract import Offset
from shared.db import DbSession

router = APIRouter(tags=["deliveries"])
Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops)]


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """For routes that call a carrier: they open their own short transactions instead of the request's one."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessions


@router.get("/v1/deliveries", summary="Deliveries the caller may see, newest first")
async def list_deliveries(
    session: DbSession,
    principal: CurrentPrincipal,
    order_id: str | None = None,
    status: str | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeliveryPage:
    total, rows = await views.page(session, principal, order_id=order_id, status=status, offset=offset, limit=limit)
    return DeliveryPage(items=[await views.delivery_read(session, principal, d, False) for d in rows], total=total)


@router.get("/v1/deliveries/{delivery_id}", summary="A delivery; staff also get its offers and every report")
async def get_delivery(session: DbSession, principal: CurrentPrincipal, delivery_id: uuid.UUID) -> DeliveryRead:
    return await views.delivery_read(session, principal, await views.find(session, principal, delivery_id), True)


@router.get("/v1/deliveries/{delivery_id}/track", summary="The rider's latest position and the ETA")
async def track(request: Request, principal: CurrentPrincipal, delivery_id: uuid.UUID) -> Tracking:
    # Its own short transactions, none open while a carrier is asked (a slow carrier must hold no row).
    dispatcher = app_dispatcher(request)
    async with _sessions(request)() as session:
        async with session.begin():
            delivery = await views.find(session, principal, delivery_id)
            ask = await dispatcher.track(session, delivery)
        if ask is not None:
            await dispatcher.locate(session, delivery, ask)
    return Tracking(
        delivery_id=delivery.id, status=delivery.status, rider=delivery.rider, lat=delivery.rider_lat,
        lng=delivery.rider_lng, located_at=delivery.rider_located_at, eta_at=delivery.eta_at,
    )  # fmt: skip


@router.post("/v1/deliveries", status_code=201, summary="Dispatch an order again after its delivery ended")
async def redispatch(request: Request, session: DbSession, principal: Staff, body: Redispatch) -> DeliveryRead:
    previous = await views.latest_of_order(session, principal, body.order_id)
    created = await app_dispatcher(request).redispatch(session, previous)
    return await views.delivery_read(session, principal, await session.get_one(Delivery, created), True)


@router.post("/v1/deliveries/{delivery_id}/tip", summary="Raise the tip while waiting for a rider (strictly higher)")
async def add_tip(
    request: Request, session: DbSession, principal: Staff, delivery_id: uuid.UUID, body: TipCommand
) -> DeliveryRead:
    delivery = await views.find(session, principal, delivery_id, lock=True)
    await app_dispatcher(request).add_tip(session, delivery, body.tip_fen, by=principal.sub)
    return await views.delivery_read(session, principal, delivery, True)


@router.get("/v1/deliveries/{delivery_id}/cancel-preview", summary="What cancelling now would cost")
async def cancel_preview(request: Request, principal: Staff, delivery_id: uuid.UUID) -> CancelPreview:
    # Read in a short transaction of its own, then ask the carriers with none open.
    dispatcher = app_dispatcher(request)
    async with _sessions(request)() as session, session.begin():
        delivery = await views.find(session, principal, delivery_id)
        offers = await dispatcher.offers(session, delivery, LIVE)
        if delivery.offer_id is not None:
            offers.append(await session.get_one(Offer, delivery.offer_id))
        accounts = [await dispatcher.account(session, offer) for offer in offers]
    fees = {
        offer.carrier: await dispatcher.cancel_fee(delivery, offer, account)
        for offer, account in zip(offers, accounts, strict=True)
    }
    return CancelPreview(deduct_fen=sum(fees.values()), offers=fees)


@router.post("/v1/deliveries/{delivery_id}/cancel", summary="Cancel at the carrier(s); the fee is recorded")
async def cancel(
    request: Request, session: DbSession, principal: Staff, delivery_id: uuid.UUID, body: CancelCommand
) -> DeliveryRead:
    delivery = await views.find(session, principal, delivery_id, lock=True)
    await app_dispatcher(request).cancel(session, delivery, reason=body.reason, by=f"merchant:{principal.sub}")
    return await views.delivery_read(session, principal, delivery, True)
