"""Parked events: a dead letter holds its subject, and the subject's later events wait behind it, in order.

The consumer parks and applies them (shared/events/consumer.py); operators list, replay and discard dead letters
through `songda dlq` (these functions). Replaying a dead letter releases it: the consumer applies it again, then the
events parked behind it, oldest first. Discarding it marks it handled (a later copy is dropped by the inbox) and
releases the rest.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from shared.events.models import InboxEvent, ParkedEvent


def subject_lock_key(consumer: str, subject: str) -> int:
    """The transaction-level advisory lock that serialises applying and parking the events of one subject."""
    digest = hashlib.sha256(f"songda-subject:{consumer}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class DeadLetter:
    consumer: str
    subject: str
    event_id: uuid.UUID
    type: str
    error: str
    parked_at: datetime
    waiting: int  # later events of the subject parked behind it


async def dead_letters(session: AsyncSession, consumer: str | None = None) -> list[DeadLetter]:
    """Every dead letter awaiting an operator, oldest first, with the number of events waiting behind each."""
    later = aliased(ParkedEvent)
    waiting = (
        select(func.count())
        .where(later.consumer == ParkedEvent.consumer, later.subject == ParkedEvent.subject, later.id > ParkedEvent.id)
        .scalar_subquery()
    )
    query = select(ParkedEvent, waiting).where(ParkedEvent.held).order_by(ParkedEvent.id)
    if consumer:
        query = query.where(ParkedEvent.consumer == consumer)
    return [
        DeadLetter(row.consumer, row.subject, row.event_id, row.type, row.error or "", row.parked_at, count)
        for row, count in (await session.execute(query)).all()
    ]


async def replay(session: AsyncSession, subjects: list[str] | None, consumer: str | None = None) -> int:
    """Releases the dead letters of `subjects` (all of them for None); returns how many."""
    query = update(ParkedEvent).where(ParkedEvent.held)
    if subjects is not None:
        query = query.where(ParkedEvent.subject.in_(subjects))
    if consumer:
        query = query.where(ParkedEvent.consumer == consumer)
    result = await session.execute(query.values(held=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def discard(session: AsyncSession, subjects: list[str], consumer: str | None = None) -> int:
    """Drops the dead letters of `subjects` for good (recorded as handled) and releases what waits behind them."""
    query = select(ParkedEvent).where(ParkedEvent.held, ParkedEvent.subject.in_(subjects)).with_for_update()
    if consumer:
        query = query.where(ParkedEvent.consumer == consumer)
    rows = (await session.scalars(query)).all()
    for row in rows:
        await session.execute(
            insert(InboxEvent)
            .values(
                consumer=row.consumer,
                event_id=row.event_id,
                type=row.type,
                topic=row.topic,
                partition=row.partition,
                offset=row.offset,
            )
            .on_conflict_do_nothing()
        )
    if rows:
        await session.execute(delete(ParkedEvent).where(ParkedEvent.id.in_([row.id for row in rows])))
    return len(rows)


# Subjects with parked events and no dead letter held, oldest first: their events can be applied now. Looked for
# every few seconds by every consumer, idle or not: one statement outside any transaction.
_RELEASED = (
    "SELECT p.subject FROM parked_event p WHERE p.consumer = $1 AND NOT EXISTS"
    " (SELECT FROM parked_event b WHERE b.consumer = p.consumer AND b.subject = p.subject AND b.held)"
    " GROUP BY p.subject ORDER BY min(p.id)"
)


async def released_subjects(connection: asyncpg.Connection, consumer: str) -> list[str]:
    """Subjects with parked events and no dead letter held: their events can be applied now."""
    return [row[0] for row in await connection.fetch(_RELEASED, consumer)]


async def parked_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ParkedEvent)) or 0)
