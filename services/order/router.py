"""Routes for orders and their review (their payment has its own: services/order/payment/router.py). State changes
are POST sub-resources."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from services.order import reviews, service
from services.order.domain import Action
from services.order.schemas import (
    CancelCommand,
    OrderCreate,
    OrderPage,
    OrderRead,
    RejectCommand,
    ReviewCreate,
    ReviewRead,
    ShipCommand,
    StatusChangeRead,
)
from services.order.settings import OrderSettings
from shared.auth import Principal, Role, require_roles
from shared.clock import AppClock
from shared.contract import Offset
from shared.db import DbSession

router = APIRouter(tags=["orders"])

# Riders see deliveries in dispatch, not orders.
OrderCaller = Annotated[Principal, require_roles(Role.customer, Role.merchant, Role.ops, Role.service)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=64,
        description="Retries with the same key return the first order",
    ),
]


def _settings(request: Request) -> OrderSettings:
    settings: OrderSettings = request.app.state.settings
    return settings


@router.post("/v1/orders", status_code=201, summary="Place an order (priced by the server, stock reserved)")
async def place_order(
    request: Request,
    response: Response,
    session: DbSession,
    clock: AppClock,
    principal: OrderCaller,
    body: OrderCreate,
    idempotency_key: IdempotencyKey = None,
) -> OrderRead:
    placed = await service.place_order(
        session, principal, body, idempotency_key=idempotency_key, clock=clock, settings=_settings(request)
    )
    if placed.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/orders/{placed.order.id}"
    return await service.order_read(session, principal, placed.order)


@router.get("/v1/orders", summary="Orders the caller may see, newest first")
async def list_orders(
    session: DbSession,
    principal: OrderCaller,
    status: str | None = None,
    store_id: str | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrderPage:
    items, total = await service.list_orders(
        session, principal, status=status, store_id=store_id, offset=offset, limit=limit
    )
    return OrderPage(items=items, total=total, offset=offset, limit=limit)


@router.get("/v1/orders/{order_id}", summary="One order (someone else's is 404)")
async def get_order(session: DbSession, principal: OrderCaller, order_id: str) -> OrderRead:
    return await service.order_read(session, principal, await service.visible_order(session, principal, order_id))


@router.get("/v1/orders/{order_id}/history", summary="Every status change, with who made it")
async def order_history(session: DbSession, principal: OrderCaller, order_id: str) -> list[StatusChangeRead]:
    order = await service.visible_order(session, principal, order_id)
    return [service.history_read(principal, change) for change in await service.status_history(session, order)]


@router.post("/v1/orders/{order_id}/accept", summary="The merchant accepts a paid order")
async def accept(session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str) -> OrderRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    service.require_merchant_side(principal)
    await service.accept_order(session, order, actor=service.actor_of(principal), clock=clock, action=Action.accept)
    return await service.order_read(session, principal, order)


@router.post("/v1/orders/{order_id}/reject", summary="The merchant rejects a paid order: full refund")
async def reject(
    session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str, body: RejectCommand
) -> OrderRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    await service.reject_order(session, principal, order, body.reason, clock)
    return await service.order_read(session, principal, order)


@router.post("/v1/orders/{order_id}/ready", summary="Packed: ready for the rider, or for pickup at the counter")
async def ready(session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str) -> OrderRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    await service.mark_ready(session, principal, order, clock)
    return await service.order_read(session, principal, order)


@router.post("/v1/orders/{order_id}/ship", summary="Express: hand to a carrier with a tracking number")
async def ship(
    request: Request, session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str, body: ShipCommand
) -> OrderRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    await service.ship_order(session, principal, order, body, clock, _settings(request))
    return await service.order_read(session, principal, order)


@router.post(
    "/v1/orders/{order_id}/cancel",
    summary="Cancel: the customer before acceptance, the merchant after; paid orders are refunded in full",
)
async def cancel(
    session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str, body: CancelCommand
) -> OrderRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    await service.cancel_order(session, principal, order, body.reason, clock)
    return await service.order_read(session, principal, order)


@router.post("/v1/orders/{order_id}/confirm-receipt", summary="The customer confirms receipt: completed")
async def confirm_receipt(session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str) -> OrderRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    await service.confirm_receipt(session, principal, order, clock)
    return await service.order_read(session, principal, order)


@router.post("/v1/orders/{order_id}/review", status_code=201, summary="Rate the store (and rider) of a completed order")
async def review(
    session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str, body: ReviewCreate
) -> ReviewRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    return ReviewRead.model_validate(await reviews.review_order(session, principal, order, body, clock))
