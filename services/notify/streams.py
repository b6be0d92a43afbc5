"""The live streams' log: an order's and a store's entries, each numbered on its own stream.

An entry is appended in the consumer's transaction. Its number on the order's stream comes from the order view's
row (locked by the handler) and on the store's from the store's row, so on each stream numbers are handed out and
committed in order: a reader that asks for "after N" never skips an entry still to commit. A NOTIFY on
`songda_stream` (sent at commit) wakes every replica's readers (`hub`); what they read comes from the table, so
any replica serves any stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import DateTime, bindparam, delete, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import OrderView, StoreStream, StreamEvent
from shared.events.envelope import Envelope

STREAM_CHANNEL = "songda_stream"
Scope = Literal["order", "store"]


# One round trip per entry: the order's next number (its row locked by the caller), the store's (an upsert that
# locks its row), the entry, and a NOTIFY for each stream's readers (sent at commit).
APPEND = text(
    "WITH order_seq AS (UPDATE order_view SET stream_seq = stream_seq + 1 WHERE order_id = :order_id"
    " RETURNING stream_seq),"
    " store_seq AS (INSERT INTO store_stream (store_id, merchant_id, seq) VALUES (:store_id, :merchant_id, 1)"
    " ON CONFLICT (store_id) DO UPDATE SET seq = store_stream.seq + 1 RETURNING seq),"
    " woken AS (SELECT pg_notify(:channel, :order_key), pg_notify(:channel, :store_key))"
    " INSERT INTO stream_event (order_id, store_id, merchant_id, order_seq, store_seq, type, data, terminal,"
    " source_event_id, created_at)"
    " SELECT :order_id, :store_id, :merchant_id, order_seq.stream_seq, store_seq.seq, :type, CAST(:data AS jsonb),"
    " CAST(:terminal AS boolean), :source_event_id, CAST(:created_at AS timestamptz) FROM order_seq, store_seq, woken"
).bindparams(bindparam("data", type_=JSONB), bindparam("created_at", type_=DateTime(timezone=True)))


async def append(
    session: AsyncSession,
    order: OrderView,
    event: Envelope,
    type_: str,
    data: dict[str, Any],
    *,
    terminal: bool = False,
) -> None:
    """Appends one entry to the order's (`order` locked by the caller) and its store's stream."""
    await session.execute(
        APPEND,
        {"order_id": order.order_id, "store_id": order.store_id, "merchant_id": order.merchant_id, "type": type_,
         "data": data, "terminal": terminal, "source_event_id": str(event.id), "created_at": event.time,
         "channel": STREAM_CHANNEL, "order_key": f"order:{order.order_id}", "store_key": f"store:{order.store_id}"},
    )  # fmt: skip


async def after(session: AsyncSession, scope: Scope, key: str, last: int, limit: int) -> list[StreamEvent]:
    """The stream's entries numbered above `last`, oldest first, at most `limit`."""
    if scope == "order":
        seq, where = StreamEvent.order_seq, StreamEvent.order_id == key
    else:
        seq, where = StreamEvent.store_seq, StreamEvent.store_id == key
    rows = await session.scalars(select(StreamEvent).where(where, seq > last).order_by(seq).limit(limit))
    return list(rows)


async def head(session: AsyncSession, scope: Scope, key: str) -> int:
    """The stream's last number (0 when empty)."""
    if scope == "order":
        value = await session.scalar(select(OrderView.stream_seq).where(OrderView.order_id == key))
    else:
        value = await session.scalar(select(StoreStream.seq).where(StoreStream.store_id == key))
    return int(value or 0)


async def prune(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(StreamEvent).where(StreamEvent.created_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def seq_of(entry: StreamEvent, scope: Scope) -> int:
    return entry.order_seq if scope == "order" else entry.store_seq
