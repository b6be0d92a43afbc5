"""Routes for deliveries: what customers and merchants see (status, rider, tracking, history), and what merchants do
(re-dispatch after a carrier gave up, add a tip, preview and cancel)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch.carriers import OWN_FLEET
from services.dispatch.errors import DeliveryNotFound
from services.dispatch.models import Delivery, DeliveryChange, Offer
from services.dispatch.schemas import (
    CancelCommand,
    CancelPreview,
    ChangeRead,
    DeliveryPage,
    DeliveryRead,
    OfferRead,
    Redispatch,
    TipCommand,
    Tracking,
)
from services.dispatch.service import LIVE, app_dispatcher
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.contract import Offset
from shared.db import DbSession
from shared.tenancy import require_tenant, store_conditions

router = APIRouter(tags=["deliveries"])
Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops)]


def _visible(principal: Principal) -> list[object]:
    """Who sees which deliveries: customers their own; riders (their merchant's own fleet) those of their merchant
    they carry, never a carrier's delivery whose carrier rider id happens to equal theirs; merchant staff their
    merchant's (their stores, if the token names stores); ops all."""
    if principal.role is Role.customer:
        return [Delivery.customer_id == principal.sub]
    require_tenant(principal)
    conditions: list[object] = store_conditions(principal, Delivery.merchant_id, Delivery.store_id)
    if principal.role is Role.rider:
        conditions += [Delivery.carrier == OWN_FLEET, Delivery.rider["id"].astext == principal.sub]
    return conditions


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """For routes that call a carrier: they open their own short transactions instead of the request's one."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessions


async def _find(session: DbSession, principal: Principal, delivery_id: uuid.UUID, lock: bool = False) -> Delivery:
    stmt = select(Delivery).where(Delivery.id == delivery_id, *_visible(principal))  # type: ignore[arg-type]
    delivery = await session.scalar(stmt.with_for_update() if lock else stmt)
    if delivery is None:
        raise DeliveryNotFound("No such delivery")
    return delivery


async def delivery_read(session: DbSession, principal: Principal, delivery: Delivery, detail: bool) -> DeliveryRead:
    staff = principal.role in (Role.merchant, Role.ops)
    read = DeliveryRead.model_validate(
        {
            **{c: getattr(delivery, c) for c in DeliveryRead.model_fields if hasattr(delivery, c)},
            "candidates": delivery.candidates if staff else None,
        }
    )
    if detail and staff:
        offers = await session.scalars(select(Offer).where(Offer.delivery_id == delivery.id).order_by(Offer.placed_at))
        changes = await session.scalars(
            select(DeliveryChange).where(DeliveryChange.delivery_id == delivery.id).order_by(DeliveryChange.id)
        )
        read.offers = [OfferRead.model_validate(o, from_attributes=True) for o in offers]
        read.history = [ChangeRead.model_validate(c, from_attributes=True) for c in changes]
    return read


@router.get("/v1/deliveries", summary="Deliveries the caller may see, newest first")
async def list_deliveries(
    session: DbSession,
    principal: CurrentPrincipal,
    order_id: str | None = None,
    status: str | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeliveryPage:
    conditions = _visible(principal)
    if order_id:
        conditions.append(Delivery.order_id == order_id)
    if status:
        conditions.append(Delivery.status == status)
    total = await session.scalar(select(func.count()).select_from(Delivery).where(*conditions))  # type: ignore[arg-type]
    rows = await session.scalars(
        select(Delivery).where(*conditions).order_by(Delivery.created_at.desc()).offset(offset).limit(limit)  # type: ignore[arg-type]
    )
    return DeliveryPage(items=[await delivery_read(session, principal, d, False) for d in rows], total=int(total or 0))


@router.get("/v1/deliveries/{delivery_id}", summary="A delivery; staff also get its offers and every report")
async def get_delivery(session: DbSession, principal: CurrentPrincipal, delivery_id: uuid.UUID) -> DeliveryRead:
    return await delivery_read(session, principal, await _find(session, principal, delivery_id), True)


@router.get("/v1/deliveries/{delivery_id}/track", summary="The rider's latest position and the ETA")
async def track(request: Request, principal: CurrentPrincipal, delivery_id: uuid.UUID) -> Tracking:
    # Its own short transactions, none open while a carrier is asked (a slow carrier must hold no row).
    dispatcher = app_dispatcher(request)
    async with _sessions(request)() as session:
        async with session.begin():
            delivery = await _find(session, principal, delivery_id)
            ask = await dispatcher.track(session, delivery)
        if ask is not None:
            await dispatcher.locate(session, delivery, ask)
    return Tracking(
        delivery_id=delivery.id, status=delivery.status, rider=delivery.rider, lat=delivery.rider_lat,
        lng=delivery.rider_lng, located_at=delivery.rider_located_at, eta_at=delivery.eta_at,
    )  # fmt: skip


@router.post("/v1/deliveries", status_code=201, summary="Dispatch an order again after its delivery ended")
async def redispatch(request: Request, session: DbSession, principal: Staff, body: Redispatch) -> DeliveryRead:
    conditions = [Delivery.order_id == body.order_id, *_visible(principal)]
    previous = await session.scalar(select(Delivery).where(*conditions).order_by(Delivery.created_at.desc()).limit(1))  # type: ignore[arg-type]
    if previous is None:
        raise DeliveryNotFound("No delivery for this order")
    created = await app_dispatcher(request).redispatch(session, previous)
    return await delivery_read(session, principal, await session.get_one(Delivery, created), True)


@router.post("/v1/deliveries/{delivery_id}/tip", summary="Raise the tip while waiting for a rider (strictly higher)")
async def add_tip(
    request: Request, session: DbSession, principal: Staff, delivery_id: uuid.UUID, body: TipCommand
) -> DeliveryRead:
    delivery = await _find(session, principal, delivery_id, lock=True)
    await app_dispatcher(request).add_tip(session, delivery, body.tip_fen, by=principal.sub)
    return await delivery_read(session, principal, delivery, True)


@router.get("/v1/deliveries/{delivery_id}/cancel-preview", summary="What cancelling now would cost")
async def cancel_preview(request: Request, principal: Staff, delivery_id: uuid.UUID) -> CancelPreview:
    # Read in a short transaction of its own, then ask the carriers with none open.
    dispatcher = app_dispatcher(request)
    async with _sessions(request)() as session, session.begin():
        delivery = await _find(session, principal, delivery_id)
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
    delivery = await _find(session, principal, delivery_id, lock=True)
    await app_dispatcher(request).cancel(session, delivery, reason=body.reason, by=f"merchant:{principal.sub}")
    return await delivery_read(session, principal, delivery, True)
