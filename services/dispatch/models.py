"""The dispatch service's tables: carrier accounts (secrets encrypted), deliveries and the offers made to carriers
for them, every status report received (raw callbacks and their applied changes), and the own fleet's riders and
the offers made to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

TS = DateTime(timezone=True)


class DispatchBase(DeclarativeBase):
    metadata = service_metadata()


class CarrierAccount(DispatchBase):
    __tablename__ = "carrier_account"
    __table_args__ = (
        Index("uq_carrier_account_store", "merchant_id", "store_id", "carrier", unique=True,
              postgresql_where=text("unbound_at IS NULL")),
        # A Dada merchant account (source_id) serves one channel only: Dada direct, or through one WeChat API.
        Index("uq_carrier_account_dada_merchant", "merchant_no", unique=True,
              postgresql_where=text("brand = 'DADA' AND unbound_at IS NULL AND merchant_no <> ''")),
        Index("ix_carrier_account_key", "carrier", "app_key"),
    )  # fmt: skip

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str] = mapped_column(Text)
    carrier: Mapped[str] = mapped_column(Text)
    brand: Mapped[str] = mapped_column(Text)  # the fleet: DADA, SS, SFTC, MTPS, UU (for WeChat, the delivery_id)
    app_key: Mapped[str] = mapped_column(Text)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    token_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # WeChat message push safe mode: the EncodingAESKey (sealed); with one, only encrypted pushes are accepted.
    aes_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    shop_id: Mapped[str] = mapped_column(Text, default="")
    merchant_no: Mapped[str] = mapped_column(Text, default="")
    bound_by: Mapped[str] = mapped_column(Text)
    bound_at: Mapped[datetime] = mapped_column(TS)
    unbound_at: Mapped[datetime | None] = mapped_column(TS)


class Delivery(DispatchBase):
    __tablename__ = "delivery"
    __table_args__ = (
        Index("uq_delivery_live_order", "order_id", unique=True, postgresql_where=text("ended_at IS NULL")),
        Index("ix_delivery_merchant", "merchant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    order_id: Mapped[str] = mapped_column(Text, index=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    strategy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Carriers in the order the strategy ranked them, with their quotes; `tried` counts those offered so far.
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    tried: Mapped[int] = mapped_column(Integer, default=0)
    pickup: Mapped[dict[str, Any]] = mapped_column(JSONB)
    dropoff: Mapped[dict[str, Any]] = mapped_column(JSONB)
    cargo_value_fen: Mapped[int] = mapped_column(Integer)
    remark: Mapped[str] = mapped_column(Text, default="")
    # The winning offer (the carrier whose rider took it); NULL while waiting for a rider.
    offer_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    carrier: Mapped[str | None] = mapped_column(Text)
    waybill_id: Mapped[str | None] = mapped_column(Text)
    fee_fen: Mapped[int | None] = mapped_column(Integer)
    tip_fen: Mapped[int] = mapped_column(Integer, default=0)
    cancel_fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    rider: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    rider_lat: Mapped[float | None] = mapped_column(Float)
    rider_lng: Mapped[float | None] = mapped_column(Float)
    rider_located_at: Mapped[datetime | None] = mapped_column(TS)
    eta_at: Mapped[datetime | None] = mapped_column(TS)
    pickup_code: Mapped[str | None] = mapped_column(Text)
    finish_code: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    last_action_at: Mapped[datetime | None] = mapped_column(TS)
    placed_at: Mapped[datetime | None] = mapped_column(TS)  # first offer placed: `delivery.created` published
    accepted_at: Mapped[datetime | None] = mapped_column(TS)
    arrived_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    ended_at: Mapped[datetime | None] = mapped_column(TS)


class Offer(DispatchBase):
    """One delivery offered to one carrier (or the own fleet): a waybill at that carrier once placed. Broadcast
    makes several; escalation adds the next carrier's."""

    __tablename__ = "offer"
    __table_args__ = (
        UniqueConstraint("shop_order_id"),
        Index("ix_offer_waybill", "carrier", "waybill_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("delivery.id"), index=True)
    carrier: Mapped[str] = mapped_column(Text)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("carrier_account.id"))
    shop_order_id: Mapped[str] = mapped_column(Text)  # our id at the carrier: unique, so a retried place is refused
    waybill_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # placed | won | lost | cancelled | failed
    quote_fen: Mapped[int | None] = mapped_column(Integer)
    fee_fen: Mapped[int | None] = mapped_column(Integer)
    tip_fen: Mapped[int] = mapped_column(Integer, default=0)
    cancel_fee_fen: Mapped[int | None] = mapped_column(Integer)
    eta_seconds: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    placed_at: Mapped[datetime] = mapped_column(TS)
    ended_at: Mapped[datetime | None] = mapped_column(TS)


class DeliveryChange(DispatchBase):
    """Every status report about a delivery, applied or not, with the verdict."""

    __tablename__ = "delivery_change"
    __table_args__ = (UniqueConstraint("offer_id", "code", "action_time", "rider_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("delivery.id"), index=True)
    offer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offer.id"))
    source: Mapped[str] = mapped_column(Text)  # callback | poll | rider | merchant | system
    code: Mapped[str] = mapped_column(Text)  # the carrier's code (or our status for our own moves)
    status: Mapped[str | None] = mapped_column(Text)
    rider_key: Mapped[str] = mapped_column(Text, default="")
    action_time: Mapped[datetime] = mapped_column(TS)
    verdict: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(TS)


class CarrierCallback(DispatchBase):
    """A callback as received, then what became of it. A verified one keeps its whole body; a refused one (anyone
    can send those) only its digest, size and a bounded prefix, and is pruned after the retention period. Query
    parameters that authenticate (signatures, nonces) are never kept."""

    __tablename__ = "carrier_callback"
    __table_args__ = (
        Index("ix_carrier_callback_outcome", "outcome", "received_at"),
        Index("ix_carrier_callback_pending", "delivery_id", "seq", postgresql_where=text("outcome = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    # Arrival order: pending callbacks are applied in it (services/dispatch/callback_queue.py).
    seq: Mapped[int] = mapped_column(BigInteger, Identity())
    carrier: Mapped[str] = mapped_column(Text)
    query: Mapped[dict[str, str]] = mapped_column(JSONB)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_sha256: Mapped[str] = mapped_column(Text)
    body_size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(TS)
    # pending → applied | duplicate | stale | refused | failed (an error; see `error`); refused at the door:
    # rejected (signature, freshness, a reused nonce, a future action time) | malformed | unknown | too_large
    outcome: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    offer_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    processed_at: Mapped[datetime | None] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class CallbackNonce(DispatchBase):
    """Nonces of WeChat pushes seen within the freshness window: a push whose nonce was seen with another body is
    refused (its signature never covers the body); pruned once older than the window."""

    __tablename__ = "callback_nonce"

    carrier: Mapped[str] = mapped_column(Text, primary_key=True)
    nonce: Mapped[str] = mapped_column(Text, primary_key=True)
    body_sha256: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(TS, index=True)


class Rider(DispatchBase):
    __tablename__ = "rider"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # the rider's token subject
    merchant_id: Mapped[str] = mapped_column(Text, index=True)
    name: Mapped[str] = mapped_column(Text, default="")
    phone: Mapped[str] = mapped_column(Text, default="")
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    located_at: Mapped[datetime | None] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)


class RiderOffer(DispatchBase):
    __tablename__ = "rider_offer"
    __table_args__ = (
        UniqueConstraint("delivery_id", "rider_id"),
        # One open offer per rider at a time: two deliveries racing for the same rider cannot both offer.
        Index("uq_rider_offer_open", "rider_id", unique=True, postgresql_where=text("status = 'offered'")),
        # A rider's offers in a state: their tasks (`views.rider_tasks`: the open and accepted ones) and whether they
        # are busy (`fleet.offer_next`), without reading every offer they ever declined or let expire.
        Index("ix_rider_offer_rider_status", "rider_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("delivery.id"))
    rider_id: Mapped[str] = mapped_column(ForeignKey("rider.id"))
    status: Mapped[str] = mapped_column(Text)  # offered | accepted | declined | expired | withdrawn
    distance_m: Mapped[int] = mapped_column(Integer)
    offered_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime] = mapped_column(TS)
    answered_at: Mapped[datetime | None] = mapped_column(TS)
