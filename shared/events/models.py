"""The outbox, inbox and timer tables that every service's first migration creates."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, LargeBinary, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import InfraBase


class OutboxEvent(InfraBase):
    """An event to publish; kept after publishing for a retention window, to republish to a fresh broker."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID, unique=True)
    topic: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)


class InboxEvent(InfraBase):
    """One row per (consumer, event) handled: the dedupe key, written in the handler's transaction."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    handled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OutboxRelayState(InfraBase):
    """The broker epoch the relay last published to (see shared/events/epoch.py)."""

    __tablename__ = "outbox_relay"

    relay: Mapped[str] = mapped_column(Text, primary_key=True)
    broker_epoch: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ParkedEvent(InfraBase):
    """An event of a subject the consumer may not apply yet, in arrival order.

    A row with `held` is a dead letter: it failed `max_attempts` times and waits for an operator (`songda dlq
    replay` or `discard`). Every later event of the same subject is parked behind it, and applied in order once
    nothing of the subject is held any more.
    """

    __tablename__ = "parked_event"
    __table_args__ = (
        UniqueConstraint("consumer", "event_id", name="uq_parked_event_consumer"),
        Index("ix_parked_event_subject", "consumer", "subject", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID)
    type: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    held: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    error: Mapped[str | None] = mapped_column(Text)
    parked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Timer(InfraBase):
    """A durable deadline: fired once by whichever worker claims it after `due_at`."""

    __tablename__ = "timer"
    __table_args__ = (
        UniqueConstraint("kind", "key", name="uq_timer_kind_key"),
        Index("ix_timer_due", "due_at", postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
