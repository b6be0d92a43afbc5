"""A request whose database connection is cut mid-transaction (PostgreSQL restarting, as `make chaos` does) is
answered 503 database-unavailable with Retry-After, never a 500; a statement the database refuses stays a 4xx; a
pooled connection the database dropped while it sat idle is replaced before anyone uses it; a peak answered
database-busy logs a line every ten seconds at most, with how many were answered so."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import errors
from shared.db import HELD_CONNECTIONS, create_engine, pooled_driver
from shared.errors import BUSY_LINE_SECONDS, Tally, install_error_handlers
from tests.support import eventually


def _app(engine: AsyncEngine) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/driver")
    async def driver() -> dict[str, int]:
        async with pooled_driver(engine) as connection:  # a hot path's checkout, without a session
            return {"one": await connection.fetchval("SELECT 1")}

    @app.post("/cut")
    async def cut() -> dict[str, str]:
        async with engine.begin() as connection:
            # The backend serving this transaction is terminated by the server, as a crash or restart does.
            await connection.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            await connection.execute(text("SELECT 1"))
        return {"never": "reached"}

    return app


async def _post_cut(engine: AsyncEngine) -> httpx.Response:
    # An exception the app let out (to be logged by the server with its traceback) would be raised here.
    transport = httpx.ASGITransport(app=_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.post("/cut")


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"] == "/problems/database-unavailable"
    assert answer.headers["Retry-After"] == "1"


async def test_a_connection_lost_mid_request_is_a_503(engine: AsyncEngine) -> None:
    _assert_unavailable(await _post_cut(engine))


async def test_a_database_refusing_connections_is_a_503() -> None:
    # A privileged port nothing listens on, as while PostgreSQL restarts: the pool re-raises the refused socket.
    refused = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    try:
        _assert_unavailable(await _post_cut(refused))
    finally:
        await refused.dispose()


async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(engine: AsyncEngine) -> None:
    # As a PostgreSQL restart does: the backend of a connection waiting in the pool goes away.
    async with engine.connect() as keeper:
        async with engine.connect() as pooled:
            doomed = await pooled.scalar(text("SELECT pg_backend_pid()"))
        await keeper.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": doomed})

        async def gone() -> bool:
            # pg_stat_activity is read once per transaction and kept: read afresh each time, or a backend still there
            # at the first look stays there (a CI run failed so).
            await keeper.execute(text("SELECT pg_stat_clear_snapshot()"))
            found = await keeper.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": doomed})
            return found == 0

        await eventually(gone)
        async with engine.connect() as replaced:  # the only one pooled: the closed one, replaced
            assert await replaced.scalar(text("SELECT pg_backend_pid()")) != doomed


async def test_a_value_refused_on_a_driver_statement_is_a_422(engine: AsyncEngine) -> None:
    """Hot paths run statements on asyncpg itself, whose errors SQLAlchemy never wraps: a value the server refuses
    as data (a NUL in jsonb) or the driver refuses before sending (past an int4) is the caller's 422 there too."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/keep/{how}")
    async def keep(how: str) -> dict[str, str]:
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            if how == "server":
                await driver.fetchval("SELECT $1::text::jsonb", '"\\u0000"')
            else:
                await driver.fetchval("SELECT $1::int4", 2**40)
        return {"never": "reached"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for how in ("server", "driver"):
            answer = await client.post(f"/keep/{how}")
            assert answer.status_code == 422, answer.text
            assert answer.json()["type"] == "/problems/value-not-storable"


@pytest.mark.parametrize("path", ["/cut", "/driver"])
async def test_a_request_no_connection_came_free_for_is_a_503(db_url: str, path: str) -> None:
    # Every connection busy past the pool's timeout (a peak the pool cannot serve): overloaded, not a 500.
    busy = create_engine(db_url, pool_size=1)
    busy.pool._timeout = 0.1  # type: ignore[attr-defined]
    try:
        async with AsyncExitStack() as held:
            for _ in range(2 * 1 + HELD_CONNECTIONS):
                await held.enter_async_context(busy.connect())
            transport = httpx.ASGITransport(app=_app(busy))
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                answer = await client.post(path)
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"] == "/problems/database-busy"
        assert answer.headers["Retry-After"] == "1"
    finally:
        await busy.dispose()


async def _answered_busy(client: httpx.AsyncClient, times: int) -> None:
    for _ in range(times):
        answer = await client.post("/busy")
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"] == "/problems/database-busy"
        assert answer.headers["Retry-After"] == "1"


async def test_a_peak_answered_database_busy_logs_one_line_per_interval_with_its_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    moment = [1000.0]
    monkeypatch.setattr(errors, "busy_answers", Tally(BUSY_LINE_SECONDS, monotonic=lambda: moment[0]))
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/busy")
    async def busy() -> dict[str, str]:
        # The pool's own timeout, raised at once (the test above waits for a real one).
        raise PoolTimeoutError("QueuePool limit of size 1 overflow 0 reached, connection timed out, timeout 0.10")

    def lines() -> list[int]:
        logged = [r for r in caplog.records if r.getMessage() == "no database connection came free in time"]
        return [r.busy_answers for r in logged]  # type: ignore[attr-defined]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        with caplog.at_level(logging.WARNING, logger="shared.errors"):
            await _answered_busy(client, 50)
            assert lines() == [1]  # the first answer's line; the other 49 within the interval, counted
            moment[0] += BUSY_LINE_SECONDS
            await _answered_busy(client, 50)
    # The first answer past the interval logs the 49 counted and itself; the 49 after it wait for the next line.
    assert lines() == [1, 50]
