"""CPU per whole delivery lifecycle (placed → paid → accepted → dispatched → delivered → completed, a carrier of the
simulator delivering), per process, beside pgbench -N's transactions per second on the same PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import httpx

from deploy.bench.context import Bench, per_operation
from deploy.bench.reference_db import reference_database
from deploy.bench.tools import pgbench, pgbench_binary
from deploy.bench.walk import call, first_sku, place_paid_order, wait_status
from deploy.local.table import PROCESSES

LIFECYCLES = 24
CONCURRENCY = 6
# Walked first and not counted: a process's first orders pay once for what later ones reuse (compiled statements,
# lazily imported modules, warmed connections), which in 12 orders had doubled the CPU per lifecycle.
WARM_UP = CONCURRENCY
# The processes standing in for WeChat, WeChat Pay, the SMS provider and the carriers: in production their CPU is the
# providers', so a lifecycle's CPU is counted without them (and shown with them beside it).
SANDBOXES = frozenset(entry.name for entry in PROCESSES if entry.serves and entry.name not in entry.serves)


async def _lifecycles(bench: Bench, count: int) -> tuple[int, int]:
    """Walks `count` orders, CONCURRENCY at a time; returns (completed, failed)."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=bench.url("gateway"), timeout=30) as client:
        sku = await first_sku(client, bench)

        async def one() -> bool:
            async with semaphore:
                orders = await bench.connect("order")
                try:
                    order_id = await place_paid_order(client, orders, bench, sku, "sim:normal")
                    await call(client, bench, "merchant", "POST", f"/v1/orders/{order_id}/accept")
                    await call(client, bench, "merchant", "POST", f"/v1/orders/{order_id}/ready")
                    await wait_status(orders, order_id, {"delivered", "completed"}, within=120)
                    await call(client, bench, "customer", "POST", f"/v1/orders/{order_id}/confirm-receipt")
                    return await wait_status(orders, order_id, {"completed"}, within=30) == "completed"
                except Exception as exc:
                    print(f"  a lifecycle failed: {exc}", flush=True)
                    return False
                finally:
                    await orders.close()

        outcomes = await asyncio.gather(*(one() for _ in range(count)))
    return sum(outcomes), count - sum(outcomes)


def _pgbench_init(bench: Bench, database: str) -> None:
    host, port = bench.postgres_url.rsplit("@", 1)[1].split(":")
    env = {**os.environ, "PGHOST": host, "PGPORT": port, "PGUSER": "postgres", "PGDATABASE": database}
    subprocess.run([pgbench_binary(), "-i", "-q", "-s", "5"], check=True, capture_output=True, env=env, timeout=300)


def measure_lifecycle(bench: Bench) -> dict[str, Any]:
    asyncio.run(_lifecycles(bench, WARM_UP))
    usage: dict[str, float] = {}
    started = time.monotonic()
    with bench.cpu(usage):
        completed, failed = asyncio.run(_lifecycles(bench, LIFECYCLES))
    seconds = time.monotonic() - started
    # What the processes spend with no traffic (when idle was measured first) is taken out: the rest is the work.
    work = {name: max(spent - bench.idle_per_second.get(name, 0.0) * seconds, 0.0) for name, spent in usage.items()}
    with reference_database(bench, "bench_tpcb", "SELECT 1") as database:
        _pgbench_init(bench, database)
        reference = pgbench(
            bench.postgres_url, database, ["-N"], None, 8, bench.seconds, bench.workdir / "pgbench-tpcb"
        )
    own = sum(spent for name, spent in work.items() if name not in SANDBOXES)
    total = own / completed if completed else 0.0
    with_sandboxes = sum(work.values()) / completed if completed else 0.0
    return {
        "measure": f"CPU per whole delivery lifecycle ({LIFECYCLES} orders, {CONCURRENCY} at a time, after {WARM_UP})",
        "songda": {
            "rate": completed / seconds,
            "seconds": seconds,
            "completed": completed,
            "errors": failed,
            "cpu_seconds_per_lifecycle": total,
            "cpu_seconds_per_lifecycle_with_sandboxes": with_sandboxes,
        },
        "reference": {
            "rate": reference.tps,
            "p50": reference.p50,
            "p99": reference.p99,
            "errors": reference.errors,
            "what": "pgbench -N, 8 clients (transactions/s)",
        },
        "ratio": None,
        "cpu_ms_per_op": per_operation(work, completed),
    }
