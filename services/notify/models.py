"""The notify service's tables: its view of orders, the customers' subscribe-message grants, the merchants' notice
templates, the notices and every attempt to send them, the SMS daily counts, merchant webhooks (endpoints, messages,
deliveries, attempts), the in-app inbox, and the live streams' event log."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

TZ = DateTime(timezone=True)


class NotifyBase(DeclarativeBase):
    metadata = service_metadata()


class OrderView(NotifyBase):
    """What notify knows of an order, from the order service's events (which carry the whole order): who to tell,
    for which store, and the numbers a notice shows. Each order's stream sequence is kept here, so appending to the
    order's stream is serialised by this row's lock."""

    __tablename__ = "order_view"

    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str] = mapped_column(Text, index=True)
    store_name: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(Text, index=True)
    contact_phone: Mapped[str] = mapped_column(Text)
    fulfilment_mode: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    total_fen: Mapped[int] = mapped_column(Integer)
    stream_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(TZ)


class StoreStream(NotifyBase):
    """A store's stream sequence: appending to the store's stream locks this row."""

    __tablename__ = "store_stream"

    store_id: Mapped[str] = mapped_column(Text, primary_key=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(BigInteger, server_default="0")


class StreamEvent(NotifyBase):
    """One entry of the live streams: an order's status change, a rider's position and ETA. `order_seq` and
    `store_seq` are the entry's id on each stream (assigned under the stream's row lock, so ids commit in order and
    a reader tailing `> Last-Event-ID` misses nothing)."""

    __tablename__ = "stream_event"
    __table_args__ = (
        UniqueConstraint("order_id", "order_seq"),
        UniqueConstraint("store_id", "store_seq"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str] = mapped_column(Text)
    merchant_id: Mapped[str] = mapped_column(Text)
    order_seq: Mapped[int] = mapped_column(BigInteger)
    store_seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    terminal: Mapped[bool] = mapped_column(Boolean, server_default="false")
    source_event_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)


class SubscribeGrant(NotifyBase):
    """One permission to send one subscribe message (a one-time grant), or a standing one (`long_term`).

    A send claims the oldest open grant with a conditional update (`consumed_at IS NULL`), so two sends can't spend
    one grant. WeChat answering 43101 for a claimed grant marks it `invalid_at` (not refunded); a rejection from the
    user's settings voids their open grants for the template."""

    __tablename__ = "subscribe_grant"
    __table_args__ = (
        Index(
            "ix_subscribe_grant_open",
            "openid",
            "template_id",
            "granted_at",
            postgresql_where=text("consumed_at IS NULL AND invalid_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    openid: Mapped[str] = mapped_column(Text)
    template_id: Mapped[str] = mapped_column(Text)
    long_term: Mapped[bool] = mapped_column(Boolean, server_default="false")
    source: Mapped[str] = mapped_column(Text)  # client | push
    # Both reports of the popup (the client's and WeChat's push) have been seen: a third is a new grant.
    matched: Mapped[bool] = mapped_column(Boolean, server_default="false")
    granted_at: Mapped[datetime] = mapped_column(TZ)
    consumed_at: Mapped[datetime | None] = mapped_column(TZ)
    consumed_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    invalid_at: Mapped[datetime | None] = mapped_column(TZ)


class PushReceipt(NotifyBase):
    """A WeChat message push already handled: WeChat retries a push it got no answer to, and a retried popup event
    must not make a second grant."""

    __tablename__ = "push_receipt"

    openid: Mapped[str] = mapped_column(Text, primary_key=True)
    create_time: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event: Mapped[str] = mapped_column(Text, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(TZ)


class NoticeTemplate(NotifyBase):
    """How a merchant tells customers of one kind of notice: the subscribe-message template and how its fields are
    filled (`fields`: keyword key -> a notice fact, e.g. `{"character_string1": "order_no", "thing2": "store_name"}`),
    and whether SMS stands in (its template and the facts of its parameters, in order) when no grant is left."""

    __tablename__ = "notice_template"

    merchant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    notice: Mapped[str] = mapped_column(Text, primary_key=True)
    template_id: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    page: Mapped[str | None] = mapped_column(Text)
    sms_fallback: Mapped[bool] = mapped_column(Boolean, server_default="false")
    sms_template_id: Mapped[str | None] = mapped_column(Text)
    sms_params: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    updated_by: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class Notice(NotifyBase):
    """One notice to one customer about one state of one order: unique by (order, key), so a redelivered event or a
    second rider's assignment finds it already there. `status`: `pending` (due at `next_attempt_at`), `sending`
    (claimed until `lease_until`), `sent`, `failed` (no channel left), `suppressed` (WeChat tells the customer itself,
    or the merchant has no template), `unknown` (a sender died mid-call: not sent again, so never twice)."""

    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint("order_id", "key"),
        Index("ix_notice_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_notice_lease", "lease_until", postgresql_where=text("status = 'sending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    order_id: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    merchant_id: Mapped[str] = mapped_column(Text, index=True)
    store_id: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(Text)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZ)
    lease_until: Mapped[datetime | None] = mapped_column(TZ)
    grant_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(TZ)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)


class NoticeAttempt(NotifyBase):
    """Every try at a notice: channel, template, outcome and the provider's error, never a whole phone number."""

    __tablename__ = "notice_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    notice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notice.id"), index=True)
    channel: Mapped[str] = mapped_column(Text)  # wechat | sms
    template_id: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text)  # sent | no_grant | refused | failed | unknown
    error_code: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    recipient: Mapped[str | None] = mapped_column(Text)  # masked
    at: Mapped[datetime] = mapped_column(TZ)


class SmsDailyCount(NotifyBase):
    """SMS sent to one customer on one day (Asia/Shanghai), against the per-customer daily cap."""

    __tablename__ = "sms_daily_count"

    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, server_default="0")


class InboxItem(NotifyBase):
    """The in-app inbox: a customer's (`recipient` = their id) or a merchant's (`recipient` = the merchant id, with
    the store it concerns) notices, read or not."""

    __tablename__ = "inbox_item"
    __table_args__ = (
        UniqueConstraint("audience", "recipient", "dedupe_key"),
        Index("ix_inbox_item_unread", "audience", "recipient", postgresql_where=text("read_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    audience: Mapped[str] = mapped_column(Text)  # customer | merchant
    recipient: Mapped[str] = mapped_column(Text)
    store_id: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ, index=True)
    read_at: Mapped[datetime | None] = mapped_column(TZ)


class WebhookEndpoint(NotifyBase):
    """A merchant's endpoint: where, which event types (empty: all), its signing secrets (sealed; the previous one
    stays valid until `previous_expires_at` after a rotation), and whether it is disabled (HTTP 410, or failing for
    longer than the setting allows)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[str] = mapped_column(Text, index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    disabled_at: Mapped[datetime | None] = mapped_column(TZ)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class WebhookMessage(NotifyBase):
    """One fact for a merchant's systems: `id` is the `webhook-id`, the same on every attempt and replay."""

    __tablename__ = "webhook_message"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    merchant_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ)

    __table_args__ = (Index("ix_webhook_message_merchant_created", "merchant_id", "created_at"),)


class WebhookDelivery(NotifyBase):
    """A message's delivery to one endpoint: `pending` until due, `sending` while claimed, then `succeeded`, or
    `failed` once the schedule is spent (or the endpoint is disabled); a replay makes it `pending` again."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("message_id", "endpoint_id"),
        Index("ix_webhook_delivery_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_delivery_lease", "lease_until", postgresql_where=text("status = 'sending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_message.id"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoint.id"), index=True)
    status: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZ)
    lease_until: Mapped[datetime | None] = mapped_column(TZ)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)


class WebhookAttempt(NotifyBase):
    """Every HTTP call made for a delivery, kept: when, the answer's status (or the transport error), how long."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_delivery.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(TZ)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
