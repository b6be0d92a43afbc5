"""The pool keeps the connections a peak opened, beside the ones a service's listeners hold for good."""

from __future__ import annotations

from contextlib import AsyncExitStack

from shared.db import HELD_CONNECTIONS, create_engine


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
