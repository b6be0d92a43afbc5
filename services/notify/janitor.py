"""Deletes what the notify service no longer needs, hourly: live-stream entries past `stream_retention_hours` (a
browser resumes within minutes) and WeChat push receipts past a day (WeChat retries a push within seconds)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify import streams
from services.notify.models import PushReceipt
from services.notify.settings import NotifySettings
from shared.clock import Clock

log = logging.getLogger(__name__)

EVERY = timedelta(hours=1)


class Janitor:
    def __init__(self, settings: NotifySettings, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock

    async def run(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(EVERY.total_seconds())

    async def sweep(self) -> int:
        now = self.clock.now()
        async with self.sessionmaker() as session, session.begin():
            pruned = await streams.prune(session, now - timedelta(hours=self.settings.stream_retention_hours))
            await session.execute(delete(PushReceipt).where(PushReceipt.received_at < now - timedelta(days=1)))
        if pruned:
            log.info("pruned live-stream entries", extra={"count": pruned})
        return pruned
