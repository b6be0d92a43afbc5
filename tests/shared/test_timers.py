"""Durable timers fire once when the clock passes `due_at`, however many workers race for them."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import FrozenClock, SystemClock
from shared.db import create_engine, create_sessionmaker
from shared.events.models import Timer
from shared.timers import TimerWorker, arm_timer, cancel_timer, schedule_timer
from tests.support import eventually

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
async def fired_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE fired (key text NOT NULL, at timestamptz NOT NULL)"))


async def cancel_unpaid(session: AsyncSession, timer: Timer) -> None:
    await session.execute(text("INSERT INTO fired VALUES (:k, now())"), {"k": timer.key})


async def _fired(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return list((await session.scalars(text("SELECT key FROM fired ORDER BY key"))).all())


def _worker(sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock, **handlers: object) -> TimerWorker:
    return TimerWorker(
        service="order",
        sessionmaker=sessionmaker,
        clock=clock,
        handlers=handlers or {"order.unpaid": cancel_unpaid},  # type: ignore[arg-type]
        batch_size=10,
    )


async def test_a_timer_fires_once_when_the_clock_passes_due_at(
    fired_table: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = FrozenClock(START)
    async with sessionmaker() as session, session.begin():
        await schedule_timer(session, kind="order.unpaid", key="o-1", due_at=START + timedelta(minutes=15))
        await schedule_timer(session, kind="order.unpaid", key="o-2", due_at=START + timedelta(minutes=15))
        await cancel_timer(session, kind="order.unpaid", key="o-2", now=START)
    worker = _worker(sessionmaker, clock)

    clock.advance(timedelta(minutes=14, seconds=59))
    assert await worker.fire_due() == 0
    assert await _fired(sessionmaker) == []

    clock.advance(timedelta(seconds=1))
    assert await worker.fire_due() == 1
    assert await worker.fire_due() == 0
    clock.advance(timedelta(hours=1))
    assert await worker.fire_due() == 0
    assert await _fired(sessionmaker) == ["o-1"]  # the cancelled one never fires


async def test_rescheduling_moves_an_unfired_timer(
    fired_table: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = FrozenClock(START)
    async with sessionmaker() as session, session.begin():
        await schedule_timer(session, kind="order.unpaid", key="o-1", due_at=START + timedelta(minutes=5))
        await schedule_timer(session, kind="order.unpaid", key="o-1", due_at=START + timedelta(minutes=30))
    worker = _worker(sessionmaker, clock)
    clock.advance(timedelta(minutes=10))
    assert await worker.fire_due() == 0
    clock.advance(timedelta(minutes=20))
    assert await worker.fire_due() == 1
    assert await _fired(sessionmaker) == ["o-1"]


async def test_scheduling_again_moves_only_an_armed_timer_and_arming_never_moves_one(
    fired_table: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A rescheduled timer takes the new `due_at` and payload; a fired or cancelled one keeps its own (it is not armed
    again); `arm_timer` keeps whatever was scheduled first."""
    clock = FrozenClock(START)
    async with sessionmaker() as session, session.begin():
        await schedule_timer(session, kind="order.unpaid", key="fired", due_at=START, payload={"n": 1})
        await schedule_timer(session, kind="order.unpaid", key="cancelled", due_at=START + timedelta(hours=1))
        await cancel_timer(session, kind="order.unpaid", key="cancelled", now=START)
    assert await _worker(sessionmaker, clock).fire_due() == 1
    later = START + timedelta(hours=2)
    async with sessionmaker() as session, session.begin():
        for key in ("fired", "cancelled"):
            await schedule_timer(session, kind="order.unpaid", key=key, due_at=later, payload={"n": 2})
        await schedule_timer(session, kind="order.unpaid", key="moved", due_at=START, payload={"n": 1})
        await schedule_timer(session, kind="order.unpaid", key="moved", due_at=later, payload={"n": 2, "why": "x"})
        await arm_timer(session, kind="order.prune", key="all", due_at=START)
        await arm_timer(session, kind="order.prune", key="all", due_at=later)
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT key, due_at, payload, fired_at IS NOT NULL, cancelled_at IS NOT NULL FROM timer"
                    " ORDER BY key"
                )
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("all", START, {}, False, False),
        ("cancelled", START + timedelta(hours=1), {}, False, True),
        ("fired", START, {"n": 1}, True, False),
        ("moved", later, {"n": 2, "why": "x"}, False, False),
    ]


async def test_two_workers_racing_fire_each_timer_once(
    fired_table: None, db_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = FrozenClock(START)
    keys = [f"o-{i:03d}" for i in range(120)]
    async with sessionmaker() as session, session.begin():
        for key in keys:
            await schedule_timer(session, kind="order.unpaid", key=key, due_at=START)
    # Two workers as two processes would be: each with its own engine and connections.
    engines = [create_engine(db_url, pool_size=3) for _ in range(2)]
    try:
        workers = [_worker(create_sessionmaker(e), clock) for e in engines]

        async def drain(worker: TimerWorker) -> int:
            total = 0
            while (claimed := await worker.fire_due()) > 0:
                total += claimed
            return total

        claimed = await asyncio.gather(*(drain(w) for w in workers))
    finally:
        for e in engines:
            await e.dispose()
    assert sum(claimed) == len(keys)
    assert await _fired(sessionmaker) == keys


async def test_a_failing_handler_is_retried_later_and_loses_nothing(
    fired_table: None, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE switch (broken bool NOT NULL)"))
        await conn.execute(text("INSERT INTO switch VALUES (true)"))

    async def flaky(session: AsyncSession, timer: Timer) -> None:
        await session.execute(text("INSERT INTO fired VALUES (:k, now())"), {"k": timer.key})
        if await session.scalar(text("SELECT broken FROM switch")):
            raise RuntimeError("carrier API down")

    clock = FrozenClock(START)
    async with sessionmaker() as session, session.begin():
        await schedule_timer(session, kind="dispatch.escalate", key="d-1", due_at=START)
    worker = _worker(sessionmaker, clock, **{"dispatch.escalate": flaky})
    assert await worker.fire_due() == 1
    assert await _fired(sessionmaker) == []  # the failed attempt's writes were rolled back
    async with sessionmaker() as session:
        assert await session.scalar(text("SELECT attempts FROM timer")) == 1
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE switch SET broken = false"))
    assert await worker.fire_due() == 0  # backing off
    clock.advance(timedelta(seconds=3))
    assert await worker.fire_due() == 1
    assert await _fired(sessionmaker) == ["d-1"]


async def test_an_idle_worker_wakes_when_a_timer_is_armed_not_at_its_next_poll(
    fired_table: None, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = FrozenClock(START)
    # Polling every 10 minutes: only the timer trigger's NOTIFY can fire the timer within the wait below.
    worker = TimerWorker(
        service="order",
        sessionmaker=sessionmaker,
        clock=clock,
        handlers={"order.unpaid": cancel_unpaid},
        poll_seconds=600,
        engine=engine,
    )
    task = asyncio.create_task(worker.run())
    try:
        async with sessionmaker() as session, session.begin():
            await schedule_timer(session, kind="order.unpaid", key="o-0", due_at=START)
        await eventually(lambda: _fired_are(sessionmaker, ["o-0"]))  # fired, and the worker goes idle
        async with sessionmaker() as session, session.begin():
            await schedule_timer(session, kind="order.unpaid", key="o-1", due_at=START)
        await eventually(lambda: _fired_are(sessionmaker, ["o-0", "o-1"]))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _fired_are(sessionmaker: async_sessionmaker[AsyncSession], keys: list[str]) -> bool:
    return await _fired(sessionmaker) == keys


class _CountedRounds(TimerWorker):
    rounds = 0

    async def fire_due(self) -> int:
        self.rounds += 1
        return await super().fire_due()


async def test_a_timer_armed_for_later_wakes_no_round_and_one_armed_sooner_is_fired_on_time(
    fired_table: None, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    worker = _CountedRounds(
        service="order",
        sessionmaker=sessionmaker,
        clock=SystemClock(),
        handlers={"order.unpaid": cancel_unpaid},
        poll_seconds=600,
        engine=engine,
    )
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _is(worker.rounds, 1))
        now = datetime.now(UTC)
        for key in ("later-1", "later-2", "later-3"):  # each moved as a delivery's deadline is, by every callback
            async with sessionmaker() as session, session.begin():
                await schedule_timer(session, kind="order.unpaid", key="later", due_at=now + timedelta(hours=1))
                await arm_timer(session, kind="order.unpaid", key=key, due_at=now + timedelta(minutes=30))
        async with sessionmaker() as session, session.begin():
            await schedule_timer(session, kind="order.unpaid", key="soon", due_at=now + timedelta(seconds=0.5))
        await eventually(lambda: _fired_are(sessionmaker, ["soon"]))
        fired_at = await _scalar(sessionmaker, "SELECT fired_at FROM timer WHERE key = 'soon'")
        assert fired_at >= now + timedelta(seconds=0.5)
        assert worker.rounds == 2  # the first, and the one when "soon" fell due: none for the later timers
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _is(value: int, expected: int) -> bool:
    return value == expected


async def _scalar(sessionmaker: async_sessionmaker[AsyncSession], sql: str) -> Any:
    async with sessionmaker() as session:
        return await session.scalar(text(sql))


async def test_a_due_timer_held_by_another_round_is_looked_for_again_shortly_not_at_once(
    fired_table: None, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        await schedule_timer(session, kind="order.unpaid", key="held", due_at=datetime.now(UTC))
    worker = _CountedRounds(
        service="order",
        sessionmaker=sessionmaker,
        clock=SystemClock(),
        handlers={"order.unpaid": cancel_unpaid},
        poll_seconds=600,
        engine=engine,
    )
    async with sessionmaker() as holder, holder.begin():  # another worker's round, firing it for a second
        await holder.execute(text("SELECT id FROM timer WHERE key = 'held' FOR UPDATE"))
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
    try:
        # Every 0.2 s while held (a busy loop had made hundreds of rounds), then fired once released.
        assert 2 <= worker.rounds <= 8
        await eventually(lambda: _fired_are(sessionmaker, ["held"]))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
