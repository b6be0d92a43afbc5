"""Writing events: into the outbox, in the caller's transaction, next to the state change they describe."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.envelope import Envelope
from shared.events.models import OutboxEvent
from shared.events.topics import events_topic


async def add_event(session: AsyncSession, event: Envelope, *, topic: str | None = None) -> None:
    """Stages the event; it is published only if the caller's transaction commits. Never commits."""
    session.add(
        OutboxEvent(
            event_id=event.id,
            topic=topic or events_topic(event.source),
            key=event.subject,
            type=event.type,
            envelope=event.model_dump(mode="json"),
        )
    )
    await session.flush()
