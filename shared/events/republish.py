"""Publishing events again (`songda events republish`): the chosen outbox rows go back in the service's backlog, and
its relay (the one active per service) sends them again, oldest first, on Tansu and Kafka alike. Consumers that had
applied them drop the copies through their inbox; a consumer that never saw them (a new one, or one whose broker lost
them) applies them. Only rows still retained (`<SERVICE>_OUTBOX_RETENTION_HOURS`) can be republished."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import OUTBOX_CHANNEL
from shared.events.models import OutboxEvent


async def republish(
    session: AsyncSession,
    *,
    subject: str | None = None,
    event_id: uuid.UUID | None = None,
    from_id: int | None = None,
    to_id: int | None = None,
) -> int:
    """Puts back in the backlog the published rows of `subject` (an order's events), or the one of `event_id`, or
    those with outbox ids from `from_id` to `to_id` (inclusive; either end open); returns how many."""
    if subject is None and event_id is None and from_id is None and to_id is None:
        raise ValueError("name a subject, an event id or an outbox id range")
    statement = update(OutboxEvent).where(OutboxEvent.published_at.is_not(None))
    if subject is not None:
        statement = statement.where(OutboxEvent.key == subject)
    if event_id is not None:
        statement = statement.where(OutboxEvent.event_id == event_id)
    if from_id is not None:
        statement = statement.where(OutboxEvent.id >= from_id)
    if to_id is not None:
        statement = statement.where(OutboxEvent.id <= to_id)
    result = await session.execute(statement.values(published_at=None, attempts=0, last_error=None))
    await session.execute(select(func.pg_notify(OUTBOX_CHANNEL, "")))  # wakes the relay once this commits
    return int(getattr(result, "rowcount", 0) or 0)
