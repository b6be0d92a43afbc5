"""Helpers for tests: serving an ASGI app on a real port, and waiting on a condition without fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.stack.ports import free_port


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Runs `app` under uvicorn on a loopback port (a free one unless given) for the duration of the block; yields
    its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def read_topic(bootstrap: str, topic: str, expected: int, within: float = 20.0) -> list[Any]:
    """Reads a topic from the beginning, with no consumer group (no join to wait for), until `expected` records
    arrived or `within` seconds passed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + within
    try:
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for partition_records in batch.values():
                records.extend(partition_records)
        # Anything beyond `expected` (a duplicate) shows up in a last short read.
        for partition_records in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def count(sessionmaker: async_sessionmaker[AsyncSession], sql: str) -> int:
    """The integer a one-value SQL query returns (0 for NULL)."""
    async with sessionmaker() as session:
        return int(await session.scalar(text(sql)) or 0)
