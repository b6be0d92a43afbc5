"""The pool keeps the connections a peak opened, beside the ones a service's listeners hold for good."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import HELD_CONNECTIONS, create_engine, pooled_driver


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
