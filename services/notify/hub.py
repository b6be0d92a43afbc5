"""Wakes this replica's stream readers when their stream has news: one LISTEN connection per process, whatever the
number of open streams, started with the first reader.

A reader only learns "look again"; what it sends comes from the stream's table (`streams.after`), so memory per
open stream is one `asyncio.Event`, and a notification lost while the listening connection was down costs a reader
at most its poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.notify.streams import STREAM_CHANNEL

log = logging.getLogger(__name__)


class StreamHub:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._readers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `key` (`order:<id>` or `store:<id>`) has news, for the block's duration."""
        self._ensure_listening()
        rung = asyncio.Event()
        self._readers[key].add(rung)
        try:
            yield rung
        finally:
            readers = self._readers.get(key)
            if readers is not None:
                readers.discard(rung)
                if not readers:
                    del self._readers[key]

    def _ensure_listening(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="notify-stream-hub")

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver = raw.driver_connection
                    assert driver is not None
                    await driver.add_listener(STREAM_CHANNEL, self._ring)
                    self._ring_all()  # anything said while no one listened
                    delay = 0.5
                    while True:
                        await asyncio.sleep(30)
                        await driver.execute("SELECT 1")  # a dead connection fails here and is replaced
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream hub lost its listening connection", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _ring(self, *args: Any) -> None:
        payload = args[3] if len(args) > 3 else ""
        for rung in self._readers.get(str(payload), ()):
            rung.set()

    def _ring_all(self) -> None:
        for readers in self._readers.values():
            for rung in readers:
                rung.set()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._listener
