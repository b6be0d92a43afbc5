"""The redemption service's tables: codes, the redemption ledger, request answers, the attempt audit, lockouts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

TZ = DateTime(timezone=True)


class RedemptionBase(DeclarativeBase):
    metadata = service_metadata()


class Code(RedemptionBase):
    __tablename__ = "code"
    __table_args__ = (
        CheckConstraint("uses_left >= 0 AND uses_left <= uses_total", name="uses_in_range"),
        # One live code of a kind per order: replays of order.paid cannot issue a second one.
        Index(
            "uq_code_order_kind_live",
            "order_id",
            "kind",
            unique=True,
            postgresql_where="order_id IS NOT NULL AND status IN ('active', 'frozen')",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)  # pickup | finish | voucher
    status: Mapped[str] = mapped_column(Text)  # active | redeemed | expired | revoked | frozen
    order_id: Mapped[str | None] = mapped_column(Text, index=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str] = mapped_column(Text, index=True)
    customer_id: Mapped[str] = mapped_column(Text, index=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)  # what it redeems: items, amount (shown by preview)
    uses_total: Mapped[int] = mapped_column(Integer)
    uses_left: Mapped[int] = mapped_column(Integer)
    cycles: Mapped[int] = mapped_column(Integer, server_default="0")  # redeem/reverse cycles so far
    # The QR token's TOTP key, sealed with REDEMPTION_VAULT_KEY and bound to the code's id (shared/vault.py).
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    valid_from: Mapped[datetime] = mapped_column(TZ)
    valid_until: Mapped[datetime] = mapped_column(TZ)
    replaces: Mapped[uuid.UUID | None] = mapped_column(UUID)
    status_reason: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Redemption(RedemptionBase):
    """The ledger: one row per successful redemption; a reversal marks it, never deletes it."""

    __tablename__ = "redemption"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    code_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("code.id"), index=True)
    count: Mapped[int] = mapped_column(Integer)
    store_id: Mapped[str] = mapped_column(Text)
    principal: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(Text)
    request_no: Mapped[str] = mapped_column(Text)
    redeemed_at: Mapped[datetime] = mapped_column(TZ)
    reversed_at: Mapped[datetime | None] = mapped_column(TZ)
    reversed_by: Mapped[str | None] = mapped_column(Text)
    reversal_reason: Mapped[str | None] = mapped_column(Text)


class RedemptionRequest(RedemptionBase):
    """The answer given to a request_no, so the same request_no always gets the same answer."""

    __tablename__ = "redemption_request"
    __table_args__ = (UniqueConstraint("scope", "request_no", name="uq_redemption_request_scope_request_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(Text)  # the merchant (or the rider's merchant)
    request_no: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    answer: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ)


class Attempt(RedemptionBase):
    """The audit log: every verification and preview, successful or not."""

    __tablename__ = "attempt"
    __table_args__ = (
        Index("ix_attempt_store_at", "store_id", "at"),
        Index("ix_attempt_failures", "result", "at"),
        Index("ix_attempt_lockout_store", "lockout_store", "at"),
        Index("ix_attempt_lockout_device", "lockout_device", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(Text)  # verify | preview
    merchant_id: Mapped[str | None] = mapped_column(Text, index=True)  # whose audit log it belongs to
    principal: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str | None] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    code_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    presented: Mapped[str] = mapped_column(Text)  # the code masked, or "qr"
    request_no: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text)  # redeemed | previewed | reversed | <problem code>
    failed: Mapped[bool] = mapped_column()
    # The store and device lockout keys a guess counted towards: only those of a store the caller works for.
    lockout_store: Mapped[str | None] = mapped_column(Text)
    lockout_device: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(TZ)


class Lockout(RedemptionBase):
    """A scope (store, device or principal) locked after too many failures; ops can unlock it."""

    __tablename__ = "lockout"

    scope: Mapped[str] = mapped_column(Text, primary_key=True)  # store | device | principal
    key: Mapped[str] = mapped_column(Text, primary_key=True)  # a store id, `<store id>:<device id>`, a subject
    locked_until: Mapped[datetime] = mapped_column(TZ)
    # Failures before this moment no longer count (set by an unlock).
    counted_from: Mapped[datetime | None] = mapped_column(TZ)
    unlocked_by: Mapped[str | None] = mapped_column(Text)
