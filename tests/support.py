"""Helpers for tests: serving an ASGI app on a real port, and waiting on a condition without fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import jwt
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI, Request, Response
from sqlalchemy import event as engine_events
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Executable

from deploy.local.ports import free_port
from shared.events.consumer import EventConsumer
from shared.events.envelope import Envelope
from shared.keys import generate_signing_key

# Signs the test tokens; services under test verify with its public key.
JWT_KEY = serialization.load_pem_private_key(generate_signing_key().encode(), password=None)
# Dispatch's handover-voucher key (PEM) in tests; the redemption service under test trusts its public key.
HANDOVER_KEY = generate_signing_key()


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Runs `app` under uvicorn on a loopback port (a free one unless given) for the duration of the block; yields
    its base URL."""
    port = port or free_port()
    # As the launcher runs them: no proxy-header rewriting by uvicorn (the apps decide the client's address).
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", proxy_headers=False)
    server = uvicorn.Server(config)

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot start (a port taken): let only this test fail,
            raise RuntimeError(f"could not serve on 127.0.0.1:{port}") from exc  # not the worker's event loop

    task = asyncio.create_task(run())
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


async def planned(
    db_url: str, statement: Executable, values: dict[str, Any], plan_cache_mode: str = "force_generic_plan"
) -> str:
    """The plan PostgreSQL runs `statement` by once prepared (as asyncpg prepares every statement), in the given
    `plan_cache_mode` (a generic plan: the one it settles on after five runs, whatever the values), with sequential
    scans off so that an index that can serve shows in it."""
    expanded = statement.compile(dialect=postgresql.asyncpg.dialect()).construct_expanded_state(values)
    written = ", ".join(
        "NULL" if value is None else str(value) if isinstance(value, int) else f"'{value}'"  # texts, uuids, times
        for value in expanded.positional_parameters
    )
    connection = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(f"SET plan_cache_mode = {plan_cache_mode}; SET enable_seqscan = off")
        await connection.execute(f"PREPARE looked_for AS {expanded.statement}")
        plan = await connection.fetch(f"EXPLAIN EXECUTE looked_for({written})")
    finally:
        await connection.close()
    return "\n".join(row[0] for row in plan)


async def count(sessionmaker: async_sessionmaker[AsyncSession], sql: str) -> int:
    """The integer a one-value SQL query returns (0 for NULL)."""
    async with sessionmaker() as session:
        return int(await session.scalar(text(sql)) or 0)


def bearer(role: str, sub: str | None = None, merchant_id: str | None = None, **claims: Any) -> dict[str, str]:
    now = datetime.now(UTC)
    body = {
        "sub": sub or f"{role}-1",
        "role": role,
        "iss": "songda",
        "aud": "songda",
        "iat": now,
        "exp": now.timestamp() + 3600,  # a loaded machine runs a module for more than 10 minutes
        **({"merchant_id": merchant_id} if merchant_id else {}),
        **claims,
    }
    return {"Authorization": "Bearer " + jwt.encode(body, JWT_KEY, algorithm="EdDSA")}  # type: ignore[arg-type]


async def run_sql(sessionmaker: async_sessionmaker[AsyncSession], statement: str, **params: Any) -> Any:
    """Runs one statement in its own transaction: the rows it returns, or the count of rows it changed."""
    async with sessionmaker() as session, session.begin():
        result = await session.execute(text(statement), params)
        return result.all() if result.returns_rows else result.rowcount


@contextlib.contextmanager
def statements(sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """The statements sent through `sessionmaker`'s engine while the block runs: through SQLAlchemy, and straight on
    the asyncpg connection under it (transaction control included)."""
    sent: list[str] = []
    engine = sessionmaker.kw["bind"].sync_engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    def record_raw(query: Any) -> None:
        sent.append(query.query)

    def watch(dbapi_connection: Any, *args: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(record_raw)

    def unwatch(dbapi_connection: Any, *args: Any) -> None:
        dbapi_connection.driver_connection.remove_query_logger(record_raw)

    engine_events.listen(engine, "before_cursor_execute", record)
    engine_events.listen(engine, "checkout", watch)
    engine_events.listen(engine, "checkin", unwatch)
    try:
        yield sent
    finally:
        engine_events.remove(engine, "before_cursor_execute", record)
        engine_events.remove(engine, "checkout", watch)
        engine_events.remove(engine, "checkin", unwatch)


class EventFeed:
    """Hands events to a service's real consumer path (inbox dedupe, handler, one transaction) without a broker:
    tests choose exactly what arrives, duplicates and reorderings included."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, handlers: Any) -> None:
        self.consumer = EventConsumer(
            service="under-test",
            sessionmaker=sessionmaker,
            bootstrap_servers=bootstrap,
            topics=["unused"],
            handlers=handlers,
            dlq_producer=None,  # type: ignore[arg-type]  # a failing handler fails the test instead
            max_attempts=1,
            retry_seconds=0,
        )
        self.offset = 0

    async def deliver(self, event: Envelope) -> None:
        self.offset += 1
        record = ConsumerRecord(
            topic=f"{event.source}.events", partition=0, offset=self.offset, timestamp=0, timestamp_type=0,
            key=event.subject.encode(), value=event.to_bytes(), checksum=None, serialized_key_size=0,
            serialized_value_size=0, headers=(),
        )  # fmt: skip
        await self.consumer.handle_record(record)

    async def close(self) -> None:
        await self.consumer.stop()


def holding_relay(target: dict[str, str], held_path: str, arrived: asyncio.Event, release: asyncio.Event) -> FastAPI:
    """Passes calls on to `target["url"]` unchanged (signatures intact), holding the one on `held_path` until
    released: a carrier, or a service, that takes its time to answer."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def relay(path: str, request: Request) -> Response:
        if f"/{path}" == held_path:
            arrived.set()
            await release.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient() as http:
            answer = await http.request(
                request.method, f"{target['url']}/{path}", params=request.query_params, content=await request.body(),
                headers=headers,
            )  # fmt: skip
        return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))

    return app
