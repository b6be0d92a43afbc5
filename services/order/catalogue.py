"""Use cases for stores and their catalogue: merchant staff manage their own merchant's stores; anyone browses."""

from __future__ import annotations

import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.order import domain
from services.order.errors import ProductNotFound, StoreExists, StoreNotFound
from services.order.models import Product, Sku, Store
from services.order.schemas import (
    NearbyStore,
    ProductCreate,
    ProductRead,
    ProductUpdate,
    SkuCreate,
    SkuRead,
    SkuUpdate,
    StoreCreate,
    StoreRead,
    StoreUpdate,
)
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Forbidden, ValidationFailed
from shared.tenancy import covers_merchant, covers_store, require_tenant, store_conditions

METRES_PER_DEGREE = 111_195


def store_rules(store: Store) -> domain.StoreRules:
    return domain.StoreRules(
        lat=store.lat,
        lng=store.lng,
        timezone=store.timezone,
        opening_hours=store.opening_hours,
        range_radius_m=store.range_radius_m,
        range_polygon=store.range_polygon,
        min_order_fen=store.min_order_fen,
        delivery_base_fen=store.delivery_base_fen,
        delivery_tiers=store.delivery_tiers,
        free_delivery_above_fen=store.free_delivery_above_fen,
        fulfilment_modes=store.fulfilment_modes,
    )


def store_read(store: Store) -> StoreRead:
    return StoreRead.model_validate(
        {
            **{c.key: getattr(store, c.key) for c in Store.__table__.columns},
            "rating": round(store.rating_sum / store.rating_count, 2) if store.rating_count else None,
        }
    )


# Riders are their merchant's staff too, but they carry orders: they never manage a store or its catalogue.
MANAGERS = (Role.merchant, Role.ops, Role.service)


def can_manage(principal: Principal, store: Store) -> bool:
    return principal.role in MANAGERS and covers_store(principal, store.merchant_id, store.id)


async def managed_store(session: AsyncSession, principal: Principal, store_id: str, *, lock: bool = False) -> Store:
    """The store, if the principal manages it. Another merchant's store, and for store-scoped staff another store of
    their merchant, is not found: out of scope reads as absent, everywhere."""
    require_tenant(principal)
    stmt = select(Store).where(Store.id == store_id)
    store = await session.scalar(stmt.with_for_update() if lock else stmt)
    if store is None or not can_manage(principal, store):
        raise StoreNotFound(f"No store {store_id}")
    return store


def _store_values(fields: dict[str, Any]) -> dict[str, Any]:
    values = dict(fields)
    for key in ("opening_hours", "delivery_tiers"):
        if key in values and values[key] is not None:
            values[key] = [dict(v) for v in values[key]]
    if "fulfilment_modes" in values and values["fulfilment_modes"] is not None:
        values["fulfilment_modes"] = [str(m) for m in values["fulfilment_modes"]]
    return values


async def create_store(session: AsyncSession, principal: Principal, command: StoreCreate, clock: Clock) -> Store:
    """Merchant-wide staff open stores for their merchant; staff of particular stores only a store their token
    already names (the demo's first store), never another one; ops for the merchant they name."""
    store_id = command.id or f"st-{secrets.token_hex(6)}"
    if principal.role is Role.merchant:
        require_tenant(principal)
        merchant_id = command.merchant_id or str(principal.merchant_id)
        if not covers_merchant(principal, merchant_id):
            raise Forbidden("Merchant staff create stores for their own merchant only")
        if not covers_store(principal, merchant_id, store_id):
            raise Forbidden("This staff account works at particular stores and may not open another one")
    elif principal.role is Role.ops:
        if not command.merchant_id:
            raise ValidationFailed("merchant_id is required when ops create a store")
        merchant_id = command.merchant_id
    else:
        raise Forbidden("Only merchant staff and ops create stores")
    if await session.get(Store, store_id) is not None:
        raise StoreExists(f"Store {store_id} exists")
    fields = _store_values(command.model_dump(mode="json", exclude={"id", "merchant_id"}))
    now = clock.now()
    store = Store(
        id=store_id,
        merchant_id=merchant_id,
        range_reach_m=domain.range_reach_m(command.lat, command.lng, command.range_radius_m, command.range_polygon),
        created_at=now,
        updated_at=now,
        rating_sum=0,
        rating_count=0,
        active=True,
        **fields,
    )
    session.add(store)
    await session.flush()
    return store


async def update_store(
    session: AsyncSession, principal: Principal, store_id: str, command: StoreUpdate, clock: Clock
) -> Store:
    store = await managed_store(session, principal, store_id, lock=True)
    changes = _store_values(command.model_dump(mode="json", exclude_unset=True))
    for key, value in changes.items():
        setattr(store, key, value)
    if store.range_polygon is None and store.range_radius_m is None:
        raise ValidationFailed("A store needs range_radius_m or range_polygon")
    if not store.fulfilment_modes:
        raise ValidationFailed("A store offers at least one fulfilment mode")
    store.range_reach_m = domain.range_reach_m(store.lat, store.lng, store.range_radius_m, store.range_polygon)
    store.updated_at = clock.now()
    await session.flush()
    return store


async def get_store(session: AsyncSession, store_id: str) -> Store:
    store = await session.get(Store, store_id)
    if store is None:
        raise StoreNotFound(f"No store {store_id}")
    return store


@dataclass(frozen=True)
class NearbyResult:
    items: list[NearbyStore]
    total: int


async def nearby_stores(
    session: AsyncSession, lat: float, lng: float, offset: int, limit: int, clock: Clock
) -> NearbyResult:
    """Active stores whose delivery range covers the point: open ones first, then nearer (in 500 m bands),
    then better rated, then nearer exactly. The SQL prefilter is a box as wide as each store's reach."""
    cos_lat = max(math.cos(math.radians(lat)), 0.01)
    candidates = (
        await session.scalars(
            select(Store).where(
                Store.active.is_(True),
                func.abs(Store.lat - lat) * METRES_PER_DEGREE <= Store.range_reach_m,
                func.abs(Store.lng - lng) * METRES_PER_DEGREE * cos_lat <= Store.range_reach_m,
            )
        )
    ).all()
    now = clock.now()
    found = []
    for store in candidates:
        rules = store_rules(store)
        if not domain.covers(rules, lat, lng):
            continue
        found.append(_listed(store, rules, domain.distance_m(store.lat, store.lng, lat, lng), now))
    found.sort(key=lambda s: (not s.open_now, (s.distance_m or 0) // 500, -(s.rating or 0), s.distance_m or 0, s.id))
    return NearbyResult(found[offset : offset + limit], len(found))


def _listed(store: Store, rules: domain.StoreRules, distance: int | None, now: datetime) -> NearbyStore:
    """A store as a list shows it; the delivery fee is the fee at `distance` (at the store's door without one)."""
    rating = round(store.rating_sum / store.rating_count, 2) if store.rating_count else None
    return NearbyStore(
        id=store.id,
        name=store.name,
        address=store.address,
        lat=store.lat,
        lng=store.lng,
        distance_m=distance,
        open_now=domain.is_open(store.opening_hours, store.timezone, now),
        rating=rating,
        rating_count=store.rating_count,
        min_order_fen=store.min_order_fen,
        delivery_fee_fen=domain.delivery_fee_fen(rules, distance or 0, 0),
        fulfilment_modes=[domain.FulfilmentMode(m) for m in store.fulfilment_modes],
    )


async def covered_stores(
    session: AsyncSession, principal: Principal, offset: int, limit: int, clock: Clock
) -> NearbyResult:
    """The stores the caller covers (a merchant's staff: its stores, or those of its scope; ops: all), by name."""
    require_tenant(principal)
    scoped = select(Store).where(*store_conditions(principal, Store.merchant_id, Store.id))
    total = await session.scalar(select(func.count()).select_from(scoped.subquery()))
    stores = (await session.scalars(scoped.order_by(Store.name, Store.id).offset(offset).limit(limit))).all()
    now = clock.now()
    items = [_listed(store, store_rules(store), None, now) for store in stores]
    return NearbyResult(items, total or 0)


# --- catalogue --------------------------------------------------------------------------------------------------


def product_read(product: Product, skus: list[Sku]) -> ProductRead:
    sku_reads = [
        SkuRead(
            id=s.id,
            name=s.name,
            price_fen=s.price_fen,
            stock=s.stock,
            on_shelf=s.on_shelf,
            sold_out=s.stock == 0,
            version=s.version,
        )
        for s in sorted(skus, key=lambda s: (s.price_fen, s.name))
    ]
    return ProductRead(
        id=product.id,
        store_id=product.store_id,
        name=product.name,
        description=product.description,
        on_shelf=product.on_shelf,
        sold_out=all(s.stock == 0 or not s.on_shelf for s in skus),
        delisted=product.delisted_at is not None,
        skus=sku_reads,
    )


async def _skus_of(session: AsyncSession, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Sku]]:
    by_product: dict[uuid.UUID, list[Sku]] = {pid: [] for pid in product_ids}
    for sku in await session.scalars(select(Sku).where(Sku.product_id.in_(product_ids))):
        by_product[sku.product_id].append(sku)
    return by_product


async def create_product(
    session: AsyncSession, principal: Principal, store_id: str, command: ProductCreate, clock: Clock
) -> ProductRead:
    await managed_store(session, principal, store_id)
    now = clock.now()
    product = Product(
        id=uuid.uuid4(),
        store_id=store_id,
        name=command.name,
        description=command.description,
        on_shelf=True,
        created_at=now,
    )
    session.add(product)
    await session.flush()
    skus = [_new_sku(product, sku, now) for sku in command.skus]
    session.add_all(skus)
    await session.flush()
    return product_read(product, skus)


def _new_sku(product: Product, command: SkuCreate, now: Any) -> Sku:
    return Sku(
        id=uuid.uuid4(),
        product_id=product.id,
        store_id=product.store_id,
        name=command.name,
        price_fen=command.price_fen,
        stock=command.stock,
        on_shelf=command.on_shelf,
        version=1,
        updated_at=now,
    )


async def managed_product(session: AsyncSession, principal: Principal, product_id: uuid.UUID) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise ProductNotFound(f"No product {product_id}")
    try:
        await managed_store(session, principal, product.store_id)
    except StoreNotFound as exc:
        raise ProductNotFound(f"No product {product_id}") from exc
    return product


async def update_product(
    session: AsyncSession, principal: Principal, product_id: uuid.UUID, command: ProductUpdate
) -> ProductRead:
    product = await managed_product(session, principal, product_id)
    for key, value in command.model_dump(exclude_unset=True).items():
        setattr(product, key, value)
    await session.flush()
    return product_read(product, (await _skus_of(session, [product.id]))[product.id])


async def delist_product(session: AsyncSession, principal: Principal, product_id: uuid.UUID, clock: Clock) -> None:
    """Takes a product off sale for good; orders already placed keep their snapshot."""
    product = await managed_product(session, principal, product_id)
    product.on_shelf = False
    product.delisted_at = product.delisted_at or clock.now()
    await session.flush()


async def add_sku(
    session: AsyncSession, principal: Principal, product_id: uuid.UUID, command: SkuCreate, clock: Clock
) -> ProductRead:
    product = await managed_product(session, principal, product_id)
    session.add(_new_sku(product, command, clock.now()))
    await session.flush()
    return product_read(product, (await _skus_of(session, [product.id]))[product.id])


async def update_sku(
    session: AsyncSession,
    principal: Principal,
    product_id: uuid.UUID,
    sku_id: uuid.UUID,
    command: SkuUpdate,
    clock: Clock,
) -> ProductRead:
    product = await managed_product(session, principal, product_id)
    changes = command.model_dump(exclude_unset=True)
    values: dict[str, Any] = {"updated_at": clock.now(), **changes}
    # What the customer buys changed: orders placed on the old version can no longer ship by express.
    if any(key in changes and changes[key] is not None for key in ("name", "price_fen")):
        values["version"] = Sku.version + 1
    updated = await session.scalar(
        update(Sku).where(Sku.id == sku_id, Sku.product_id == product.id).values(**values).returning(Sku.id)
    )
    if updated is None:
        raise ProductNotFound(f"No SKU {sku_id} in product {product_id}")
    skus = list(
        await session.scalars(select(Sku).where(Sku.product_id == product.id).execution_options(populate_existing=True))
    )
    return product_read(product, skus)


async def list_products(
    session: AsyncSession, store_id: str, offset: int, limit: int, *, include_off_shelf: bool
) -> tuple[list[ProductRead], int]:
    await get_store(session, store_id)
    conditions = [Product.store_id == store_id, Product.delisted_at.is_(None)]
    if not include_off_shelf:
        conditions.append(Product.on_shelf.is_(True))
    total = int(await session.scalar(select(func.count()).select_from(Product).where(*conditions)) or 0)
    products = (
        await session.scalars(
            select(Product).where(*conditions).order_by(Product.created_at, Product.id).offset(offset).limit(limit)
        )
    ).all()
    skus = await _skus_of(session, [p.id for p in products])
    reads = []
    for product in products:
        visible = skus[product.id] if include_off_shelf else [s for s in skus[product.id] if s.on_shelf]
        reads.append(product_read(product, visible))
    return reads, total


async def get_product(session: AsyncSession, product_id: uuid.UUID) -> ProductRead:
    product = await session.get(Product, product_id)
    if product is None or product.delisted_at is not None:
        raise ProductNotFound(f"No product {product_id}")
    return product_read(product, (await _skus_of(session, [product.id]))[product.id])
