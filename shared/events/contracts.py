"""Typed event contracts: what a publisher sends, and the narrow part of it each consumer reads.

A publisher describes each event type it emits with an `EventPayload` (frozen, unknown fields refused: it cannot
emit a field its model lacks) and lists them in its `events.py` as `PUBLISHED`. A consumer declares, per event type,
an `EventView` holding only the fields it reads, under the publisher's names and types (eShop's consumer-side
integration event records), and registers its handler with `handles(View, handler)`: the handler gets the event's
data validated into the view, so a misspelt field is an error in the contract test (tests/contracts/), not a silent
None in production.

An event whose data does not validate against the view is a poison event: the same bytes fail the same way however
often they are retried, so the consumer dead-letters it at once (`EventContractError`), holding its subject, instead
of retrying it `max_attempts` times first. Once the consumer's view (or the publisher) is fixed, an operator replays
the dead letter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Generic, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError, WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.envelope import Envelope

EventHandler = Callable[[AsyncSession, Envelope], Awaitable[None]]


def _iso(value: datetime) -> str:
    return value.isoformat()


# A moment as publishers have always written it: `datetime.isoformat()`, so `+00:00`, never pydantic's `Z`.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class EventPayload(BaseModel):
    """The data of one event type as its publisher sends it: every field, with its type and whether it is always
    there. Frozen, and refusing unknown fields, so what is published is exactly what the model (and the AsyncAPI
    document generated from it) says."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EventView(BaseModel):
    """What one consumer reads of one event type: only those fields, named and typed as the publisher's model has
    them. Fields it does not read are ignored, so a publisher may add fields freely; renaming or retyping one a view
    reads fails the contract test."""

    model_config = ConfigDict(frozen=True, extra="ignore")


V = TypeVar("V", bound=EventView)


class EventContractError(Exception):
    """The event's data does not validate against the consumer's view: a poison event, dead-lettered at once."""


# A question for the database about an event `concerns` let through, on a connection outside any transaction (one
# statement, no BEGIN): whether the consumer has anything to do with it right now.
Asks = Callable[[asyncpg.Connection, Envelope, V], Awaitable[bool]]


@dataclass(frozen=True)
class Handles(Generic[V]):
    """An `EventHandler` that validates the event's data into `view` before `handler` runs. With `concerns`, the
    consumer skips the events it rejects as it skips types it has no handler for: before opening a transaction,
    without an inbox row (they have no effect to deduplicate) or a log line (a code.redeemed of a voucher, say, for
    a consumer of order codes). With `asks`, it skips as well the events whose effect would depend on rows the
    handler would find empty (no merchant webhook wanting a voucher's redemption, say): the same read the handler
    makes, asked in one statement instead of a transaction with its inbox row, lock and parking check."""

    view: type[V]
    handler: Callable[[AsyncSession, Envelope, V], Awaitable[None]]
    concerns: Callable[[V], bool] | None = None
    asks: Asks[V] | None = None

    def read(self, event: Envelope) -> V:
        try:
            return self.view.model_validate(event.data)
        except ValidationError as exc:
            raise EventContractError(
                f"{event.type} {event.id} does not fit {self.view.__name__}: {exc.errors(include_url=False)[:3]}"
            ) from exc

    def concerned(self, event: Envelope) -> bool:
        """Whether the consumer should handle the event. One that does not validate is handled, so that it fails
        (and is dead-lettered) instead of being skipped unseen."""
        if self.concerns is None:
            return True
        try:
            return self.concerns(self.read(event))
        except EventContractError:
            return True

    async def concerned_now(self, connection: asyncpg.Connection, event: Envelope) -> bool:
        """Whether the database says there is anything to do with the event (`asks`); an event that does not
        validate is handled, as by `concerned`."""
        if self.asks is None:
            return True
        try:
            view = self.read(event)
        except EventContractError:
            return True
        return await self.asks(connection, event, view)

    async def __call__(self, session: AsyncSession, event: Envelope) -> None:
        await self.handler(session, event, self.read(event))


def handles(
    view: type[V],
    handler: Callable[[AsyncSession, Envelope, V], Awaitable[None]],
    concerns: Callable[[V], bool] | None = None,
    asks: Asks[V] | None = None,
) -> Handles[V]:
    """`handler` for events whose data it reads as `view` (and, with `concerns` and `asks`, only those it is
    concerned with)."""
    return Handles(view, handler, concerns, asks)
