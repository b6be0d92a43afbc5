"""The pool keeps the connections a peak opened, beside the ones a service's listeners hold for good, and hands them
to those waiting in the order they asked."""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import AsyncExitStack

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty

from shared.db import HELD_CONNECTIONS, create_engine, pooled_driver
from shared.pool_queue import FirstComePool, FirstComeQueue


async def test_connections_held_by_listeners_leave_the_working_ones_kept(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=3)
    try:
        async with AsyncExitStack() as held:
            for _ in range(HELD_CONNECTIONS):  # the relay's lock, the timers' and work queues' LISTEN
                await held.enter_async_context(engine.connect())
            async with AsyncExitStack() as working:  # a peak: as many requests at once as the pool allows
                for _ in range(2 * 3):
                    await working.enter_async_context(engine.connect())
            # Back in the pool, none closed: the next burst finds them open (no connect, no statements prepared anew).
            assert engine.pool.checkedin() == 2 * 3  # type: ignore[attr-defined]
            assert engine.pool.checkedout() == HELD_CONNECTIONS  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


class _Stopped(Exception):
    """The block given up, with the connection it had."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        super().__init__("stopped")
        self.connection = connection


async def _stop_in_a_transaction(engine: AsyncEngine) -> None:
    async with pooled_driver(engine) as connection:
        await connection.execute("BEGIN")
        await connection.execute("CREATE TEMP TABLE half_done (n int)")
        raise _Stopped(connection)  # between two statements of the caller's own


async def _stop_mid_statement(engine: AsyncEngine) -> None:
    async with pooled_driver(engine) as connection:
        try:
            await asyncio.wait_for(connection.execute("SELECT pg_sleep(5)"), 0.2)
        except TimeoutError as timeout:
            raise _Stopped(connection) from timeout


async def test_a_pooled_driver_left_in_a_transaction_is_rolled_back_before_it_is_pooled(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    try:
        with pytest.raises(_Stopped) as stopped:
            await _stop_in_a_transaction(engine)
        async with pooled_driver(engine) as again:
            assert again is stopped.value.connection  # kept: the same connection, fit to use
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT to_regclass('pg_temp.half_done')") is None
    finally:
        await engine.dispose()


async def test_a_pooled_driver_given_up_mid_statement_is_handed_out_again_only_once_done(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    try:
        with pytest.raises(_Stopped):
            await _stop_mid_statement(engine)
        async with pooled_driver(engine) as next_user:
            assert await asyncio.wait_for(next_user.fetchval("SELECT 1"), 1) == 1  # not behind the 5 s sleep
            assert not next_user.is_in_transaction()
    finally:
        await engine.dispose()


async def _connect(engine: AsyncEngine) -> None:
    async with pooled_driver(engine):
        pass


async def test_a_pooled_driver_that_cannot_connect_raises_as_a_session_would(db_url: str) -> None:
    # As through a session: a DBAPIError, which shared.errors answers (503 when the server refuses connections).
    engine = create_engine(db_url.rsplit("/", 1)[0] + "/songda_no_such_database", pool_size=1)
    try:
        with pytest.raises(DBAPIError):
            await _connect(engine)
    finally:
        await engine.dispose()


async def _warm(engine: AsyncEngine, connections: int) -> None:
    """Opens `connections` at once and pools them again, so that every checkout after finds the pool full."""
    async with AsyncExitStack() as opened:
        for _ in range(connections):
            await opened.enter_async_context(pooled_driver(engine))


async def test_connections_go_to_those_waiting_in_the_order_they_asked(db_url: str) -> None:
    # asyncio.Queue, SQLAlchemy's own, let a task asking just after a connection came back take it from the waiter it
    # was meant for, who then joined the back of the line: under a peak some requests waited many turns.
    engine = create_engine(db_url, pool_size=1)
    connections = 2 * 1 + HELD_CONNECTIONS
    tickets = itertools.count()
    served: list[int] = []

    async def work(checkouts: int) -> None:
        for _ in range(checkouts):  # each asks again at once: in line behind those already waiting
            ticket = next(tickets)
            async with pooled_driver(engine) as connection:
                served.append(ticket)
                await connection.fetchval("SELECT 1")

    try:
        await _warm(engine, connections)
        await asyncio.gather(*(work(5) for _ in range(6 * connections)))
        assert len(served) == 5 * 6 * connections
        assert served == sorted(served)
    finally:
        await engine.dispose()


async def test_a_connection_handed_to_a_waiter_cancelled_at_that_moment_goes_on_to_the_next(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    connections = 2 * 1 + HELD_CONNECTIONS
    try:
        await _warm(engine, connections)
        async with AsyncExitStack() as held:
            for _ in range(connections - 1):
                await held.enter_async_context(pooled_driver(engine))
            last = pooled_driver(engine)
            await last.__aenter__()
            first = asyncio.create_task(_connect(engine))
            second = asyncio.create_task(_connect(engine))
            gave_up = asyncio.create_task(_connect(engine))
            await asyncio.sleep(0.05)  # all three in line
            gave_up.cancel()  # before it was served: out of the line
            await last.__aexit__(None, None, None)  # handed to `first`...
            first.cancel()  # ...cancelled before it could take it
            await asyncio.wait_for(second, 5)  # served all the same, with the connection `first` had been handed
            with pytest.raises(asyncio.CancelledError):
                await first
            with pytest.raises(asyncio.CancelledError):
                await gave_up
        assert engine.pool.checkedin() == connections  # type: ignore[attr-defined]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_a_checkout_waits_no_longer_than_the_pools_timeout(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    engine.pool._timeout = 0.1  # type: ignore[attr-defined]
    connections = 2 * 1 + HELD_CONNECTIONS
    try:
        async with AsyncExitStack() as held:
            for _ in range(connections):
                await held.enter_async_context(pooled_driver(engine))
            with pytest.raises(SQLAlchemyTimeoutError):
                await _connect(engine)
        async with pooled_driver(engine) as connection:  # the next is served at once
            assert await connection.fetchval("SELECT 1") == 1
        assert engine.pool.checkedin() == connections  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_a_connection_given_back_just_after_a_waiters_time_ran_out_stays_pooled() -> None:
    loop = asyncio.get_running_loop()
    line: FirstComeQueue[str] = FirstComeQueue(maxsize=2)
    waiting = asyncio.create_task(greenlet_spawn(line.get, True, 0.05))
    await asyncio.sleep(0)  # in line
    loop.call_later(0.06, line.put_nowait, "connection")  # given back just after its time runs out...
    time.sleep(0.1)  # noqa: ASYNC251 - ...both overdue when the loop next turns, the time first
    with pytest.raises(Empty):
        await waiting
    assert line.qsize() == 1  # not handed to the waiter who gave up: there for the next


async def test_a_connection_given_back_just_before_a_waiters_time_ran_out_is_taken() -> None:
    line: FirstComeQueue[str] = FirstComeQueue(maxsize=2)
    waiting = asyncio.create_task(greenlet_spawn(line.get, True, 0.05))
    await asyncio.sleep(0)  # in line
    time.sleep(0.1)  # noqa: ASYNC251 - its time ran out, but the loop has not turned to say so...
    line.put_nowait("connection")  # ...when a connection comes back: handed over first
    assert await waiting == "connection"
    assert line.qsize() == 0


def test_a_pool_that_waits_in_line_keeps_no_overflow() -> None:
    with pytest.raises(ValueError, match="overflow"):
        FirstComePool(lambda: None, pool_size=2, max_overflow=1)
