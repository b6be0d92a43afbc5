"""The order service's tables: stores, catalogue, orders and their lines, payments, refunds, reviews."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

TZ = DateTime(timezone=True)


class OrderBase(DeclarativeBase):
    metadata = service_metadata()


class Store(OrderBase):
    __tablename__ = "store"
    __table_args__ = (Index("ix_store_lat_lng", "lat", "lng"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    merchant_id: Mapped[str] = mapped_column(Text, index=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    lat: Mapped[float] = mapped_column(Float)  # GCJ-02
    lng: Mapped[float] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(Text)
    opening_hours: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    range_radius_m: Mapped[int | None] = mapped_column(Integer)
    range_polygon: Mapped[list[list[float]] | None] = mapped_column(JSONB)
    range_reach_m: Mapped[int] = mapped_column(Integer)
    min_order_fen: Mapped[int] = mapped_column(Integer)
    delivery_base_fen: Mapped[int] = mapped_column(Integer)
    delivery_tiers: Mapped[list[dict[str, int]]] = mapped_column(JSONB)
    free_delivery_above_fen: Mapped[int | None] = mapped_column(Integer)
    prep_minutes: Mapped[int] = mapped_column(Integer)
    fulfilment_modes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    dispatch_trigger: Mapped[str] = mapped_column(Text)  # on_accept | on_ready
    dispatch_strategy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    auto_accept: Mapped[bool] = mapped_column(Boolean)
    accept_limit_minutes: Mapped[int] = mapped_column(Integer)
    rating_sum: Mapped[int] = mapped_column(Integer, server_default="0")
    rating_count: Mapped[int] = mapped_column(Integer, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Product(OrderBase):
    __tablename__ = "product"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    store_id: Mapped[str] = mapped_column(ForeignKey("store.id"), index=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    on_shelf: Mapped[bool] = mapped_column(Boolean, server_default="true")
    delisted_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)


class Sku(OrderBase):
    __tablename__ = "sku"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("product.id"), index=True)
    store_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    price_fen: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    on_shelf: Mapped[bool] = mapped_column(Boolean, server_default="true")
    # Bumped whenever what the customer bought changes (name, price): an order placed on an older version cannot
    # ship by express (seed 004). Stock moves do not bump it.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(TZ)


class CustomerOrder(OrderBase):
    __tablename__ = "customer_order"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="uq_customer_order_idempotency"),
        Index("ix_customer_order_merchant_placed", "merchant_id", "placed_at"),
        Index("ix_customer_order_customer_placed", "customer_id", "placed_at"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("store.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    fulfilment_mode: Mapped[str] = mapped_column(Text)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    contact: Mapped[dict[str, Any]] = mapped_column(JSONB)
    note: Mapped[str] = mapped_column(Text, server_default="")
    distance_m: Mapped[int | None] = mapped_column(Integer)
    items_fen: Mapped[int] = mapped_column(Integer)
    delivery_fee_fen: Mapped[int] = mapped_column(Integer)
    total_fen: Mapped[int] = mapped_column(Integer)
    refunded_fen: Mapped[int] = mapped_column(Integer, server_default="0")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    express_carrier: Mapped[str | None] = mapped_column(Text)
    express_tracking_no: Mapped[str | None] = mapped_column(Text)
    delivery: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # latest delivery facts from dispatch
    open_aftersales: Mapped[int] = mapped_column(Integer, server_default="0")
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str | None] = mapped_column(Text)
    placed_at: Mapped[datetime] = mapped_column(TZ)
    paid_at: Mapped[datetime | None] = mapped_column(TZ)
    accepted_at: Mapped[datetime | None] = mapped_column(TZ)
    ready_at: Mapped[datetime | None] = mapped_column(TZ)
    delivered_at: Mapped[datetime | None] = mapped_column(TZ)
    completed_at: Mapped[datetime | None] = mapped_column(TZ)
    cancelled_at: Mapped[datetime | None] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class OrderLine(OrderBase):
    __tablename__ = "order_line"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), index=True)
    sku_id: Mapped[uuid.UUID] = mapped_column(UUID)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID)
    # The snapshot the customer agreed to; later catalogue changes never alter it.
    name: Mapped[str] = mapped_column(Text)
    price_fen: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    sku_version: Mapped[int] = mapped_column(Integer)


class OrderStatusChange(OrderBase):
    """Every status move, with who or what made it: the order's history for support and disputes."""

    __tablename__ = "order_status_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(TZ)


class Payment(OrderBase):
    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), unique=True)
    out_trade_no: Mapped[str] = mapped_column(Text, unique=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    payer_openid: Mapped[str] = mapped_column(Text)
    prepay_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # created | paid | closed
    transaction_id: Mapped[str | None] = mapped_column(Text, unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)


class Refund(OrderBase):
    """One refund request. `cause` is unique per order, so a reason to refund refunds once however often it
    arrives; `out_refund_no` is what the provider dedupes on when a submission is retried."""

    __tablename__ = "refund"
    __table_args__ = (UniqueConstraint("order_id", "cause", name="uq_refund_order_cause"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(Text, unique=True)
    cause: Mapped[str] = mapped_column(Text)  # rejected | customer_cancel | accept_timeout | aftersales:<case> ...
    amount_fen: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # pending | processing | succeeded | failed
    refund_id: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    settled_at: Mapped[datetime | None] = mapped_column(TZ)


class PaymentNotification(OrderBase):
    """Every provider notification as received, for audit and dispute: whole when handled, as a digest and prefix
    when refused (see `notifications`)."""

    __tablename__ = "payment_notification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str | None] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)  # applied | duplicate | rejected:<why>
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[str] = mapped_column(Text)  # whole when handled; a refused one keeps a bounded prefix
    body_sha256: Mapped[str] = mapped_column(Text)
    body_size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(TZ)


class AftersalesHold(OrderBase):
    """An after-sales case the order service learned of from events; an open one blocks express shipping."""

    __tablename__ = "aftersales_hold"

    case_id: Mapped[str] = mapped_column(Text, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), index=True)
    opened_at: Mapped[datetime] = mapped_column(TZ)
    closed_at: Mapped[datetime | None] = mapped_column(TZ)


class Review(OrderBase):
    __tablename__ = "review"
    __table_args__ = (
        CheckConstraint("store_rating BETWEEN 1 AND 5", name="store_rating_range"),
        CheckConstraint("rider_rating IS NULL OR rider_rating BETWEEN 1 AND 5", name="rider_rating_range"),
    )

    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), primary_key=True)
    store_id: Mapped[str] = mapped_column(Text, index=True)
    customer_id: Mapped[str] = mapped_column(Text)
    store_rating: Mapped[int] = mapped_column(Integer)
    rider_rating: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, server_default="")
    reply: Mapped[str | None] = mapped_column(Text)
    replied_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)
