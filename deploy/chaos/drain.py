"""After the faults: wait (bounded) for the system to settle before the invariants are checked, polling until every
outbox is published, no refund is in flight (at the order service, nor an after-sales case waiting for its refund)
and every order the load placed and every case it opened is in a final state."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from deploy.chaos.invariants import FINAL_ORDER_STATUSES, Databases
from deploy.chaos.stack import Bench


async def connect_all(bench: Bench, services: tuple[str, ...], within: float = 60.0) -> Databases:
    """A connection to each service's database, retried while PostgreSQL is still recovering."""
    deadline = time.monotonic() + within
    dbs: Databases = {}
    while True:
        try:
            for service in services:
                if service not in dbs:
                    dbs[service] = await bench.connect(service)
            return dbs
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                await close_all(dbs)
                raise
            await asyncio.sleep(1)


async def close_all(dbs: Databases) -> None:
    for connection in dbs.values():
        with contextlib.suppress(Exception):
            await connection.close()


async def _unsettled(dbs: Databases, order_ids: list[str], case_ids: list[str]) -> dict[str, int]:
    left = {}
    for service, connection in dbs.items():
        if await connection.fetchval("SELECT to_regclass('outbox') IS NOT NULL"):
            left[f"{service} outbox"] = await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
    orders = dbs["order"]
    left["orders not final"] = await orders.fetchval(
        "SELECT count(*) FROM customer_order WHERE id = ANY($1::text[]) AND status <> ALL($2::text[])",
        order_ids,
        list(FINAL_ORDER_STATUSES),
    )
    left["refunds in flight"] = await orders.fetchval(
        "SELECT count(*) FROM refund WHERE status IN ('pending', 'processing')"
    )
    if "aftersales" in dbs:
        cases = dbs["aftersales"]
        # A case asks the order service for its refund by an event: until the outcome comes back it is `refunding`,
        # whether or not the order service has staged the refund yet.
        left["cases refunding"] = await cases.fetchval("SELECT count(*) FROM aftersales_case WHERE state = 'refunding'")
        left["cases not closed"] = await cases.fetchval(
            "SELECT count(*) FROM aftersales_case WHERE id = ANY($1::text[]) AND closed_at IS NULL", case_ids
        )
    return left


async def drain(
    bench: Bench, services: tuple[str, ...], order_ids: list[str], case_ids: list[str], within: float
) -> dict[str, object]:
    """Polls every 2 s until nothing is left to settle or `within` seconds pass; returns what was left and when."""
    started = time.monotonic()
    dbs = await connect_all(bench, services)
    try:
        while True:
            left = await _unsettled(dbs, order_ids, case_ids)
            waited = round(time.monotonic() - started, 1)
            if not any(left.values()):
                return {"settled": True, "seconds": waited, "left": left}
            if waited > within:
                return {"settled": False, "seconds": waited, "left": {k: v for k, v in left.items() if v}}
            await asyncio.sleep(2)
    finally:
        await close_all(dbs)
