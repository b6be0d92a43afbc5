"""Routes for stores, products and reviews: thin, each parses, calls a use case and returns a schema."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.order import catalogue, reviews
from services.order.schemas import (
    NearbyStorePage,
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
    ReplyCreate,
    ReviewPage,
    ReviewRead,
    SkuCreate,
    SkuUpdate,
    StoreCreate,
    StoreRead,
    StoreUpdate,
)
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.clock import AppClock
from shared.contract import Offset
from shared.db import DbSession
from shared.errors import ValidationFailed

router = APIRouter(tags=["stores and catalogue"])

Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops)]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.get(
    "/v1/stores",
    summary="Stores whose delivery range covers a point, open ones and nearer ones first; without a point (staff "
    "and ops), the stores the caller covers",
)
async def list_stores(
    session: DbSession,
    clock: AppClock,
    principal: CurrentPrincipal,
    lat: Annotated[float | None, Query(ge=-90, le=90, description="GCJ-02")] = None,
    lng: Annotated[float | None, Query(ge=-180, le=180)] = None,
    offset: Offset = 0,
    limit: Limit = 20,
) -> NearbyStorePage:
    if lat is not None and lng is not None:
        found = await catalogue.nearby_stores(session, lat, lng, offset, limit, clock)
    elif lat is None and lng is None and principal.role in (Role.merchant, Role.ops):
        found = await catalogue.covered_stores(session, principal, offset, limit, clock)
    else:
        raise ValidationFailed("Give lat and lng (a point to deliver to); only staff may list their stores without")
    return NearbyStorePage(items=found.items, total=found.total, offset=offset, limit=limit)


@router.post("/v1/stores", status_code=201, summary="Create a store (merchant staff: for their own merchant)")
async def create_store(session: DbSession, clock: AppClock, principal: Staff, body: StoreCreate) -> StoreRead:
    return catalogue.store_read(await catalogue.create_store(session, principal, body, clock))


@router.get("/v1/stores/{store_id}", summary="A store's public profile and settings")
async def get_store(session: DbSession, _: CurrentPrincipal, store_id: str) -> StoreRead:
    return catalogue.store_read(await catalogue.get_store(session, store_id))


@router.patch("/v1/stores/{store_id}", summary="Change a store's settings")
async def update_store(
    session: DbSession, clock: AppClock, principal: Staff, store_id: str, body: StoreUpdate
) -> StoreRead:
    return catalogue.store_read(await catalogue.update_store(session, principal, store_id, body, clock))


@router.get("/v1/stores/{store_id}/products", summary="A store's catalogue; staff may include off-shelf items")
async def list_products(
    session: DbSession,
    principal: CurrentPrincipal,
    store_id: str,
    offset: Offset = 0,
    limit: Limit = 50,
    include_off_shelf: bool = False,
) -> ProductPage:
    if include_off_shelf:
        await catalogue.managed_store(session, principal, store_id)
    items, total = await catalogue.list_products(session, store_id, offset, limit, include_off_shelf=include_off_shelf)
    return ProductPage(items=items, total=total, offset=offset, limit=limit)


@router.post("/v1/stores/{store_id}/products", status_code=201, summary="Add a product with its SKUs")
async def create_product(
    session: DbSession, clock: AppClock, principal: Staff, store_id: str, body: ProductCreate
) -> ProductRead:
    return await catalogue.create_product(session, principal, store_id, body, clock)


@router.get("/v1/products/{product_id}", summary="A product and its SKUs (stock 0 shows as sold out)")
async def get_product(session: DbSession, _: CurrentPrincipal, product_id: uuid.UUID) -> ProductRead:
    return await catalogue.get_product(session, product_id)


@router.patch("/v1/products/{product_id}", summary="Rename, describe, or put on / take off the shelf")
async def update_product(
    session: DbSession, principal: Staff, product_id: uuid.UUID, body: ProductUpdate
) -> ProductRead:
    return await catalogue.update_product(session, principal, product_id, body)


@router.delete("/v1/products/{product_id}", status_code=204, summary="Delist a product for good")
async def delist_product(session: DbSession, clock: AppClock, principal: Staff, product_id: uuid.UUID) -> Response:
    await catalogue.delist_product(session, principal, product_id, clock)
    return Response(status_code=204)


@router.post("/v1/products/{product_id}/skus", status_code=201, summary="Add a SKU")
async def add_sku(
    session: DbSession, clock: AppClock, principal: Staff, product_id: uuid.UUID, body: SkuCreate
) -> ProductRead:
    return await catalogue.add_sku(session, principal, product_id, body, clock)


@router.patch(
    "/v1/products/{product_id}/skus/{sku_id}",
    summary="Change a SKU; a new name or price bumps its version (orders on the old one cannot ship by express)",
)
async def update_sku(
    session: DbSession,
    clock: AppClock,
    principal: Staff,
    product_id: uuid.UUID,
    sku_id: uuid.UUID,
    body: SkuUpdate,
) -> ProductRead:
    return await catalogue.update_sku(session, principal, product_id, sku_id, body, clock)


@router.get("/v1/stores/{store_id}/reviews", summary="A store's reviews, newest first")
async def store_reviews(
    session: DbSession, _: CurrentPrincipal, store_id: str, offset: Offset = 0, limit: Limit = 20
) -> ReviewPage:
    await catalogue.get_store(session, store_id)
    items, total = await reviews.store_reviews(session, store_id, offset, limit)
    return ReviewPage(items=[ReviewRead.model_validate(r) for r in items], total=total, offset=offset, limit=limit)


@router.post("/v1/reviews/{order_id}/reply", summary="The merchant's one reply to a review")
async def reply(session: DbSession, clock: AppClock, principal: Staff, order_id: str, body: ReplyCreate) -> ReviewRead:
    return ReviewRead.model_validate(await reviews.reply_to_review(session, principal, order_id, body, clock))
