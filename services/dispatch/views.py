"""What a caller may see of deliveries, in one place: who sees which, finding one, a page of them, the read
model with its offers and reports for staff, a rider's tasks, a merchant's riders. The routers (router.py,
rider_router.py) ask here and run no queries of their own."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.carriers import OWN_FLEET
from services.dispatch.errors import DeliveryNotFound
from services.dispatch.models import Delivery, DeliveryChange, Offer, Rider, RiderOffer
from services.dispatch.schemas import ChangeRead, DeliveryRead, OfferRead
from shared.auth import Principal, Role
from shared.tenancy import require_tenant, store_conditions


def visible(principal: Principal) -> list[object]:
    """Who sees which deliveries: customers their own; riders (their merchant's own fleet) those of their merchant
    they carry, never a carrier's delivery whose carrier rider id happens to equal theirs; merchant staff their
    merchant's (their stores, if the token names stores); ops all. A tracking link's principal only its order's."""
    one_order: list[object] = [] if principal.order_id is None else [Delivery.order_id == principal.order_id]
    if principal.role is Role.customer:
        return [Delivery.customer_id == principal.sub, *one_order]
    require_tenant(principal)
    conditions: list[object] = [*store_conditions(principal, Delivery.merchant_id, Delivery.store_id), *one_order]
    if principal.role is Role.rider:
        conditions += [Delivery.carrier == OWN_FLEET, Delivery.rider["id"].astext == principal.sub]
    return conditions


async def find(session: AsyncSession, principal: Principal, delivery_id: uuid.UUID, lock: bool = False) -> Delivery:
    stmt = select(Delivery).where(Delivery.id == delivery_id, *visible(principal))  # type: ignore[arg-type]
    delivery = await session.scalar(stmt.with_for_update() if lock else stmt)
    if delivery is None:
        raise DeliveryNotFound("No such delivery")
    return delivery


async def delivery_read(session: AsyncSession, principal: Principal, delivery: Delivery, detail: bool) -> DeliveryRead:
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


async def page(
    session: AsyncSession, principal: Principal, *, order_id: str | None, status: str | None, offset: int, limit: int
) -> tuple[int, list[Delivery]]:
    """The deliveries the caller may see, newest first, and how many there are in all."""
    conditions = visible(principal)
    if order_id:
        conditions.append(Delivery.order_id == order_id)
    if status:
        conditions.append(Delivery.status == status)
    total = await session.scalar(select(func.count()).select_from(Delivery).where(*conditions))  # type: ignore[arg-type]
    rows = await session.scalars(
        select(Delivery).where(*conditions).order_by(Delivery.created_at.desc()).offset(offset).limit(limit)  # type: ignore[arg-type]
    )
    return int(total or 0), list(rows)


async def latest_of_order(session: AsyncSession, principal: Principal, order_id: str) -> Delivery:
    """The order's newest delivery the caller may see."""
    conditions = [Delivery.order_id == order_id, *visible(principal)]
    newest = select(Delivery).where(*conditions).order_by(Delivery.created_at.desc()).limit(1)  # type: ignore[arg-type]
    latest: Delivery | None = await session.scalar(newest)
    if latest is None:
        raise DeliveryNotFound("No delivery for this order")
    return latest


async def rider_tasks(
    session: AsyncSession, principal: Principal, now: datetime
) -> Sequence[tuple[RiderOffer, Delivery]]:
    """A rider's offers still open at `now` and accepted tasks still under way, within their merchant's stores."""
    rows = await session.execute(
        select(RiderOffer, Delivery)
        .join(Delivery, Delivery.id == RiderOffer.delivery_id)
        .where(
            RiderOffer.rider_id == principal.sub,
            *store_conditions(principal, Delivery.merchant_id, Delivery.store_id),
            Delivery.ended_at.is_(None),
            ((RiderOffer.status == "offered") & (RiderOffer.expires_at > now)) | (RiderOffer.status == "accepted"),
        )
        .order_by(RiderOffer.offered_at)
    )
    return [(offer, delivery) for offer, delivery in rows.all()]


async def riders(session: AsyncSession, merchant_id: str | None) -> Sequence[Rider]:
    """A merchant's riders."""
    return (await session.scalars(select(Rider).where(Rider.merchant_id == merchant_id).order_by(Rider.id))).all()
