"""Async engine, session factory, the request-scoped session that commits once per request, and wake-ups by
PostgreSQL NOTIFY for the background workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import ColumnClause, MetaData, Text, event, exc, literal_column
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from shared.database_tls import split_tls
from shared.errors import Refused
from shared.pool_queue import FirstComePool

# Constraint names fixed by convention, so Alembic histories stay stable across services.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> MetaData:
    """A fresh MetaData with the house constraint names, for one declarative base (`metadata = service_metadata()`):
    each service's base holds its own, so its Alembic history sees its tables and no other service's."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class InfraBase(DeclarativeBase):
    """Tables every service has (outbox, inbox, timer); each service's own tables use its own base."""

    metadata = service_metadata()


def written_out(state: str) -> ColumnClause[str]:
    """A state written into a statement's text, not bound as a parameter: asyncpg prepares each statement, and after
    five runs PostgreSQL settles on a generic plan, which can use a partial index of that state (`WHERE status =
    'pending'`) only when the state is in the text; with a parameter it walks a wider index instead (the callback
    queue's claim had read the entries of every callback applied since the last vacuum)."""
    assert state.isidentifier(), state  # a plain word: nothing to quote
    return literal_column(f"'{state}'", Text())


# Connections a service holds for as long as it runs, each on a LISTEN or a lock: the relay's leadership, the timers',
# and the work queues' (dispatch's callbacks; notify's courier, webhooks and live hub). Five at most (notify's).
HELD_CONNECTIONS = 5


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """A pool of up to twice `pool_size` connections for requests and work, plus `HELD_CONNECTIONS` for the
    listeners, each opened when first needed and then kept: SQLAlchemy's overflow (connections past `pool_size`
    closed as they come back) closed and opened connections all through a peak, each paying startup, type lookups
    and its statements prepared anew (callbacks bench: PostgreSQL 0.66 -> 0.40 ms of CPU per callback), and the
    listeners' connections counted against the ones kept. The most recently used is handed out first (the busy ones
    stay warm, the rest idle), and when none is idle they go to those waiting in the order they came
    (shared/pool_queue.py); TLS as the URL's `sslmode` and friends say (shared/database_tls.py). A pooled connection
    the server has closed (PostgreSQL restarted, the backend terminated) is replaced at checkout, with every
    connection pooled before it (`_refuse_closed`)."""
    plain_url, connect_args = split_tls(url)
    # Looked up on the module when called: with tracing on, the SQLAlchemy instrumentor wraps it there.
    engine = sqlalchemy_asyncio.create_async_engine(
        plain_url,
        pool_size=2 * pool_size + HELD_CONNECTIONS,
        max_overflow=0,
        pool_use_lifo=True,
        poolclass=FirstComePool,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
    """Instead of the pool's pre-ping (BEGIN, a statement and ROLLBACK: three round trips on every checkout): the
    driver already knows, without a round trip, whether the server closed the connection, since the event loop reads
    every idle socket. The pool then drops it and those pooled before it (the others a restart closed), and connects."""
    if dbapi_connection.driver_connection.is_closed():
        raise exc.InvalidatePoolError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed after the route returns (before the response is sent, so a failed
    commit is an error response, not a lost write), rolled back on any error but a `Refused`, which is committed
    (its audit rows kept) and then answered."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    refused: Refused | None = None
    async with sessionmaker() as session:
        async with session.begin():
            try:
                yield session
            except Refused as exc:
                refused = exc  # leaving the block normally commits
        if refused is not None:
            raise refused


DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]


@asynccontextmanager
async def pooled_driver(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the engine's pool as its asyncpg driver, without a session: for a hot path whose statements
    are each atomic by themselves (no transaction unless the caller opens `connection.transaction()`). A session
    with its transaction costs about 0.4 ms of CPU to open and close around one statement, this about 0.08. Left in
    a transaction (an error between statements of the caller's own), the connection is rolled back before it is
    pooled again; cancelled, or still busy with a statement given up, it is closed instead. A connection that cannot
    be made raises as through a session (`DBAPIError`, answered 503 by shared.errors)."""
    try:
        fairy = await greenlet_spawn(engine.sync_engine.raw_connection)
    except Exception as error:
        dbapi_error = engine.dialect.loaded_dbapi.Error
        if isinstance(error, dbapi_error):
            raise exc.DBAPIError.instance(None, None, error, dbapi_error) from error
        raise
    driver: asyncpg.Connection = fairy.driver_connection
    try:
        yield driver
    except (TimeoutError, asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        fairy.invalidate()  # perhaps mid-statement
        raise
    except Exception as error:
        fit = False
        try:
            fit = await _fit_again(driver, error)
        finally:
            if not fit:
                fairy.invalidate()
        raise
    finally:
        await greenlet_spawn(fairy.close)


async def _fit_again(driver: asyncpg.Connection, error: Exception) -> bool:
    """Whether the connection can be pooled again after `error`: out of any transaction and not busy. The server's
    own refusal of a statement (bad input) left nothing under way; anything else is rolled back (ROLLBACK outside a
    transaction is a warning, nothing more), which also waits out a statement given up."""
    if isinstance(error, asyncpg.PostgresError) and not driver.is_in_transaction():
        return True
    try:
        await driver.execute("ROLLBACK")
    except Exception:
        return False
    return True


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The session's asyncpg connection, for a hot statement without the ORM or compilation. Used as the session's
    first statement it runs outside any transaction (the driver adapter begins one only at SQLAlchemy's first
    statement): atomic by itself, with no BEGIN or COMMIT round trip."""
    raw = await (await session.connection()).get_raw_connection()
    connection: asyncpg.Connection = raw.driver_connection
    return connection


# Channels the triggers of each service's `*_notify` migration notify, in the inserting transaction (so
# only once it commits): a new outbox row, a timer armed or moved.
OUTBOX_CHANNEL = "songda_outbox"
TIMER_CHANNEL = "songda_timer"


@asynccontextmanager
async def notifications(
    conn: AsyncConnection, channel: str, heard: Callable[[str], None] | None = None
) -> AsyncIterator[asyncio.Event]:
    """An event set by every NOTIFY on `channel` while the block runs (and `heard` given each one's payload, before
    the event is set). `conn` must be dedicated to it and kept outside transactions between uses: PostgreSQL
    delivers notifications only to an idle session."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    rung = asyncio.Event()

    def ring(connection: Any, pid: int, channel: str, payload: str) -> None:
        if heard is not None:
            heard(payload)
        rung.set()

    await driver.add_listener(channel, ring)
    try:
        yield rung
    finally:
        with suppress(Exception):  # a broken connection listens no more anyway
            await driver.remove_listener(channel, ring)


async def work_in_rounds(
    engine: AsyncEngine,
    channel: str,
    one_round: Callable[[], Awaitable[int]],
    *,
    batch_size: int,
    idle_seconds: Callable[[], Awaitable[float]],
) -> None:
    """A work queue's loop: rounds back to back while each fills a batch, then a wait until `channel` is notified
    (new work committed) or `idle_seconds()` passed (the next item falls due), on a connection of its own."""
    async with engine.connect() as conn, notifications(conn, channel) as rung:
        while True:
            if await one_round() >= batch_size:
                continue
            await wait_for_ring(rung, await idle_seconds())


async def wait_for_ring(rung: asyncio.Event, at_most_seconds: float) -> bool:
    """Waits until notified (True) or `at_most_seconds` passed (False), and clears the event for the next round."""
    try:
        await asyncio.wait_for(rung.wait(), max(at_most_seconds, 0.0))
    except TimeoutError:
        return False
    finally:
        rung.clear()
    return True
