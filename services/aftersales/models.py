"""The aftersales service's tables: its own view of orders (built from order, delivery and code events), cases
with their lines, history, evidence and compensations, merchants' and stores' deadline overrides."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
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

TZ = DateTime(timezone=True)


class AftersalesBase(DeclarativeBase):
    metadata = service_metadata()


class OrderView(AftersalesBase):
    """What the service knows of an order, from the order service's events (which carry the whole order) and the
    delivery and code events: never read from the order service's tables."""

    __tablename__ = "order_view"

    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, index=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    fulfilment_mode: Mapped[str] = mapped_column(Text)
    items_fen: Mapped[int] = mapped_column(Integer)
    delivery_fee_fen: Mapped[int] = mapped_column(Integer)
    total_fen: Mapped[int] = mapped_column(Integer)
    refunded_fen: Mapped[int] = mapped_column(Integer, server_default="0")
    paid_at: Mapped[datetime | None] = mapped_column(TZ)
    picked_up_at: Mapped[datetime | None] = mapped_column(TZ)
    # When the customer got the order (delivered, handed over or picked up): the application window starts here.
    received_at: Mapped[datetime | None] = mapped_column(TZ)
    carrier: Mapped[str | None] = mapped_column(Text)
    # Proofs of delivery: the own rider's handover (a finish-code redemption) and carriers' delivered reports.
    proofs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    updated_at: Mapped[datetime] = mapped_column(TZ)


class OrderViewLine(AftersalesBase):
    __tablename__ = "order_view_line"

    order_id: Mapped[str] = mapped_column(ForeignKey("order_view.order_id"), primary_key=True)
    sku_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    price_fen: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)


class AftersalesCase(AftersalesBase):
    __tablename__ = "aftersales_case"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="uq_aftersales_case_idempotency"),
        # One system-opened non-delivery case per order, however often its delivery events arrive.
        Index("uq_aftersales_case_non_delivery", "order_id", unique=True,
              postgresql_where=text("type = 'non_delivery'")),
    )  # fmt: skip

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("order_view.order_id"), index=True)
    customer_id: Mapped[str] = mapped_column(Text, index=True)
    merchant_id: Mapped[str] = mapped_column(Text, index=True)
    store_id: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, index=True)
    # Bumped by every move: a deadline acts only if the case is still at the version that armed it.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    reason_code: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    # Money in fen: what the customer asked, what was agreed (approval, proposal or ruling), what the payment
    # provider actually refunded (from the order service's refund outcome).
    asked_fen: Mapped[int] = mapped_column(Integer)
    agreed_fen: Mapped[int | None] = mapped_column(Integer)
    refunded_fen: Mapped[int | None] = mapped_column(Integer)
    refund_attempt: Mapped[int] = mapped_column(Integer, server_default="0")
    proposal: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reject_reason_code: Mapped[str | None] = mapped_column(Text)
    return_shipment: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reship_shipment: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    ruling: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The proofs of delivery known when the case opened (shown to ops beside the customer's evidence).
    delivery_proofs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    perishable: Mapped[bool] = mapped_column(Boolean)
    deadline: Mapped[str | None] = mapped_column(Text)
    deadline_at: Mapped[datetime | None] = mapped_column(TZ)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    closed_at: Mapped[datetime | None] = mapped_column(TZ)


class CaseLine(AftersalesBase):
    """A line (or the delivery fee) a case covers. `open` is cleared when the case ends: at most one open case
    per line is a unique index, not only a check."""

    __tablename__ = "aftersales_case_line"
    __table_args__ = (
        Index("uq_aftersales_case_line_open", "order_id", "sku_id", unique=True, postgresql_where=text("open")),
    )

    case_id: Mapped[str] = mapped_column(ForeignKey("aftersales_case.id"), primary_key=True)
    sku_id: Mapped[str] = mapped_column(Text, primary_key=True)
    order_id: Mapped[str] = mapped_column(Text, index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    open: Mapped[bool] = mapped_column(Boolean)


class CaseChange(AftersalesBase):
    """One move of a case: who, when, why."""

    __tablename__ = "aftersales_case_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("aftersales_case.id"), index=True)
    action: Mapped[str] = mapped_column(Text)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    side: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, server_default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    at: Mapped[datetime] = mapped_column(TZ)


class EvidenceFile(AftersalesBase):
    """An image a party uploaded, stored here (not on a file system), visible only to the case's parties and ops.
    Uploaded before the case exists it belongs to its uploader until an application names it."""

    __tablename__ = "aftersales_evidence"
    __table_args__ = (UniqueConstraint("uploaded_by", "idempotency_key", name="uq_aftersales_evidence_idempotency"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("aftersales_case.id"), index=True)
    uploaded_by: Mapped[str] = mapped_column(Text)
    side: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(Text)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)


class Compensation(AftersalesBase):
    """Money granted to the customer (`customer`) or claimed from a carrier (`carrier_claim`), each reconciled on
    its own: the customer's through the order service's refund, the carrier's by ops recording what it paid."""

    __tablename__ = "aftersales_compensation"
    __table_args__ = (UniqueConstraint("case_id", "kind", name="uq_aftersales_compensation_case_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("aftersales_case.id"), index=True)
    order_id: Mapped[str] = mapped_column(Text, index=True)
    kind: Mapped[str] = mapped_column(Text)  # customer | carrier_claim
    party: Mapped[str] = mapped_column(Text)  # the customer id, or the carrier
    basis_fen: Mapped[int] = mapped_column(Integer)
    rate_percent: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(Integer)
    settled_fen: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)  # granted | paid | failed; claims: open | recovered | written_off
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    settled_at: Mapped[datetime | None] = mapped_column(TZ)


class Policy(AftersalesBase):
    """A merchant's overrides of the deadline and window defaults (only the keys it set): for all its stores
    (`store_id` empty) or for one store, which wins over the merchant's."""

    __tablename__ = "aftersales_policy"

    merchant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    store_id: Mapped[str] = mapped_column(Text, primary_key=True)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_by: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TZ)
