"""One service under test, as every service's tests drive it: its app served on a real port over its own migrated
database, with its workers off. Timers fire when the test says (`timers.fire_due()`, after moving the FrozenClock)
and events arrive through the real consumer path (`feed.deliver`, inbox included), so nothing depends on sleeps.

A service's tests subclass `ServiceHarness` with what is their own (fixtures of their domain, a sandbox client) and
build it with `served`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import FrozenClock
from shared.timers import TimerWorker
from tests.support import EventFeed, run_sql, serve


@dataclass
class ServiceHarness:
    client: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    timers: TimerWorker
    feed: EventFeed

    async def sql(self, statement: str, **params: Any) -> Any:
        return await run_sql(self.sessionmaker, statement, **params)

    async def outbox(self, event_type: str) -> list[dict[str, Any]]:
        """The envelopes of the events of this type the service published, oldest first."""
        rows = await self.sql("SELECT envelope FROM outbox WHERE type = :t ORDER BY id", t=event_type)
        return [row[0] for row in rows]

    async def events(self, key: str) -> list[str]:
        """The types of the lifecycle events the service published about `key` (its outbox), oldest first: rider
        positions (`delivery.location.v1`, a tracking feed beside the lifecycle) are left out; `outbox` reads them."""
        rows = await self.sql(
            "SELECT type FROM outbox WHERE key = :key AND type <> 'delivery.location.v1' ORDER BY id", key=key
        )
        return [row[0] for row in rows]


H = TypeVar("H", bound=ServiceHarness)


@contextlib.asynccontextmanager
async def served(
    app: FastAPI, harness: type[H], *, port: int | None = None, client_timeout: float = 60, **own: Any
) -> AsyncIterator[H]:
    """Serves `app` (built with `run_workers=False` on a FrozenClock) for the block and yields `harness` over it;
    `own` are the subclass's own fields."""
    clock = app.state.clock
    assert isinstance(clock, FrozenClock), "tests move the clock: build the app on a FrozenClock"
    async with serve(app, port=port) as url:
        sessionmaker = app.state.sessionmaker
        settings = app.state.settings
        timers = TimerWorker(
            service=settings.service_name, sessionmaker=sessionmaker, clock=clock, handlers=app.state.timer_handlers
        )
        feed = EventFeed(sessionmaker, settings.kafka_bootstrap_servers, app.state.event_handlers)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=client_timeout) as client:
                yield harness(client=client, sessionmaker=sessionmaker, clock=clock, timers=timers, feed=feed, **own)
        finally:
            await feed.close()
