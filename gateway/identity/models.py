"""The gateway's identity tables: staff accounts, their invitations, refresh tokens (hashes only), sign-in throttles."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, Text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

TZ = DateTime(timezone=True)


class IdentityBase(DeclarativeBase):
    metadata = service_metadata()


class StaffAccount(IdentityBase):
    """A person who signs in with a password: a merchant's staff (its admin, or scoped to stores), a rider, ops."""

    __tablename__ = "staff_account"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    login: Mapped[str] = mapped_column(Text, unique=True)  # lower-cased
    display_name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)  # merchant | rider | ops
    merchant_id: Mapped[str | None] = mapped_column(Text, index=True)
    # A merchant's admin manages its staff; merchant-wide (no store_ids).
    admin: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Empty: every store of the merchant.
    store_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    # argon2id; NULL until the invitation is accepted, and again after a reset.
    password_hash: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(TZ)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Invitation(IdentityBase):
    """A one-time token that lets its account set a password: sent on invitation and on a reset."""

    __tablename__ = "invitation"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)  # SHA-256 of the token, hex
    account_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("staff_account.id"), index=True)
    purpose: Mapped[str] = mapped_column(Text)  # invite | reset
    created_at: Mapped[datetime] = mapped_column(TZ)
    expires_at: Mapped[datetime] = mapped_column(TZ)
    used_at: Mapped[datetime | None] = mapped_column(TZ)


class RefreshToken(IdentityBase):
    """One refresh token of a sign-in's family. Using it rotates it (`rotated_at`); using a rotated one again means
    it was stolen, and revokes the whole family."""

    __tablename__ = "refresh_token"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)  # SHA-256 of the token, hex
    family_id: Mapped[uuid.UUID] = mapped_column(UUID, index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("staff_account.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(TZ)
    expires_at: Mapped[datetime] = mapped_column(TZ)
    rotated_at: Mapped[datetime | None] = mapped_column(TZ)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)


class SignInThrottle(IdentityBase):
    """Failed sign-ins of one login or one client address in the current window (shared by every gateway replica)."""

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(Text, primary_key=True)  # account:<login> | address:<ip>
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(TZ)
