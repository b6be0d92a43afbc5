"""Reviews: the customer rates a completed order's store (and rider); the merchant replies once; the store's
rating is kept as a running sum and count, updated atomically, and feeds the nearby ranking."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.order import events
from services.order.catalogue import managed_store
from services.order.domain import OrderStatus
from services.order.errors import AlreadyReviewed, InvalidTransition, OrderNotFound
from services.order.models import CustomerOrder, Review, Store
from services.order.schemas import ReplyCreate, ReviewCreate
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Conflict, Forbidden

REVIEWABLE = {OrderStatus.completed.value, OrderStatus.partially_refunded.value}


async def review_order(
    session: AsyncSession, principal: Principal, order: CustomerOrder, command: ReviewCreate, clock: Clock
) -> Review:
    if principal.role is not Role.customer:
        raise Forbidden("Only the customer reviews an order")
    if order.status not in REVIEWABLE:
        raise InvalidTransition(f"Order {order.id} is {order.status}; reviews open once it is completed")
    if command.rider_rating is not None and order.fulfilment_mode != "delivery":
        raise Conflict("Only delivered orders have a rider to rate")
    created = await session.scalar(
        insert(Review)
        .values(
            order_id=order.id,
            store_id=order.store_id,
            customer_id=order.customer_id,
            store_rating=command.store_rating,
            rider_rating=command.rider_rating,
            text=command.text,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing()
        .returning(Review.order_id)
    )
    if created is None:
        raise AlreadyReviewed(f"Order {order.id} has been reviewed")
    await session.execute(
        update(Store)
        .where(Store.id == order.store_id)
        .values(rating_sum=Store.rating_sum + command.store_rating, rating_count=Store.rating_count + 1)
    )
    await events.publish(
        session,
        clock,
        order,
        events.REVIEWED,
        store_rating=command.store_rating,
        rider_rating=command.rider_rating,
        rider=(order.delivery or {}).get("rider"),
    )
    return await session.get_one(Review, order.id)


async def reply_to_review(
    session: AsyncSession, principal: Principal, order_id: str, command: ReplyCreate, clock: Clock
) -> Review:
    review = await session.scalar(select(Review).where(Review.order_id == order_id).with_for_update())
    if review is None:
        raise OrderNotFound(f"No review of order {order_id}")
    await managed_store(session, principal, review.store_id)  # another merchant's review is not found
    if review.reply is not None:
        raise Conflict("This review has a reply")
    review.reply, review.replied_at = command.reply, clock.now()
    await session.flush()
    return review


async def store_reviews(session: AsyncSession, store_id: str, offset: int, limit: int) -> tuple[list[Review], int]:
    total = int(await session.scalar(select(func.count()).select_from(Review).where(Review.store_id == store_id)) or 0)
    reviews = await session.scalars(
        select(Review).where(Review.store_id == store_id).order_by(Review.created_at.desc()).offset(offset).limit(limit)
    )
    return list(reviews), total
