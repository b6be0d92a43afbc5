"""Redemptions through the gateway at 50 and 200 concurrent, sent by wrk (a C client, as pgbench is: a Python client
at 200 connections spends more CPU per request than the service it measures), beside pgbench running the same
conditional UPDATE on a table shaped like the codes table. The requests are prepared first, each with its own
request_no, cycling through the vouchers so that requests in flight at once are on different vouchers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from deploy.bench.context import Bench, per_operation
from deploy.bench.reference_db import reference_database
from deploy.bench.tools import THREADS, Prepared, pgbench, write_requests, wrk
from deploy.local.seed import DEMO_STORE_ID

CONCURRENCY = (50, 200)
VOUCHERS = 400  # 100 uses each
USES = 100

CODES_TABLE = """
CREATE TABLE code (
  id uuid PRIMARY KEY, code text UNIQUE, kind text, status text, order_id text, merchant_id text, store_id text,
  customer_id text, title text, summary jsonb, uses_total int, uses_left int, cycles int DEFAULT 0,
  secret_sealed bytea, valid_from timestamptz, valid_until timestamptz, replaces uuid, status_reason text,
  issued_at timestamptz, updated_at timestamptz);
CREATE INDEX ON code (store_id); CREATE INDEX ON code (customer_id); CREATE INDEX ON code (order_id);
INSERT INTO code SELECT gen_random_uuid(), 'B' || n, 'voucher', 'active', NULL, 'm', 's', 'c', 't',
  '{"title": "t", "uses": 1000000}', 1000000, 1000000, 0, '\\x00', now() - interval '1 hour',
  now() + interval '1 day', NULL, NULL, now(), now() FROM generate_series(1, 100000) n;
"""
CONDITIONAL_UPDATE = """\\set n random(1, 100000)
UPDATE code SET uses_left = uses_left - 1, status = CASE WHEN uses_left = 1 THEN 'redeemed' ELSE status END,
  updated_at = now() WHERE code = 'B' || :n AND status = 'active' AND uses_left >= 1 AND valid_until > now()
  AND valid_from <= now() RETURNING id, uses_left;
"""


async def _issue_vouchers(bench: Bench) -> list[str]:
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {
        "store_id": DEMO_STORE_ID,
        "customer_id": "bench-customer",
        "title": "bench",
        "uses": USES,
        "valid_until": until,
    }
    async with httpx.AsyncClient(base_url=bench.url("gateway"), headers=bench.auth("merchant"), timeout=30) as client:
        semaphore = asyncio.Semaphore(16)

        async def issue() -> str:
            async with semaphore:
                response = await client.post("/v1/codes/vouchers", json=body)
                response.raise_for_status()
                return str(response.json()["id"])

        ids = await asyncio.gather(*(issue() for _ in range(VOUCHERS)))
    connection: asyncpg.Connection = await bench.connect("redemption")
    try:  # the digits, which only the voucher's customer is shown
        rows = await connection.fetch("SELECT code FROM code WHERE id = ANY($1::uuid[])", ids)
    finally:
        await connection.close()
    return [row["code"] for row in rows]


def _requests(codes: list[str]) -> list[Prepared]:
    """Every use of every voucher, voucher after voucher (wrk's two threads take alternate lines: vouchers of their
    own)."""
    return [
        Prepared(
            "POST",
            "/v1/redemptions",
            orjson.dumps(
                {
                    "code": codes[n % len(codes)],
                    "store_id": DEMO_STORE_ID,
                    "request_no": f"bench-{run}-{n}",
                    "device_id": f"bench-{n % THREADS}",
                }
            ),
            "application/json",
        )
        for run in (uuid.uuid4().hex[:8],)
        for n in range(len(codes) * USES)
    ]


def measure_redemption(bench: Bench) -> list[dict[str, Any]]:
    codes = asyncio.run(_issue_vouchers(bench))
    rows = []
    for concurrency in CONCURRENCY:
        requests = write_requests(bench.workdir / f"redemptions-{concurrency}.txt", _requests(codes))
        usage: dict[str, float] = {}
        with bench.cpu(usage):
            load = wrk(bench.url("gateway") + "/", bench.auth("merchant"), concurrency, bench.seconds, requests)
        done = load.statuses.get(201, 0)
        with reference_database(bench, "bench_codes", CODES_TABLE) as database:
            reference = pgbench(
                bench.postgres_url,
                database,
                [],
                CONDITIONAL_UPDATE,
                concurrency,
                bench.seconds,
                bench.workdir / "pgbench-redemption",
            )
        rows.append(
            {
                "measure": f"redemptions/s through the gateway, {concurrency} concurrent",
                "songda": {
                    "rate": load.rate_of(201),
                    "p50": load.p50,
                    "p99": load.p99,
                    "errors": load.requests - done,
                    "statuses": load.statuses,
                },
                "reference": {
                    "rate": reference.tps,
                    "p50": reference.p50,
                    "p99": reference.p99,
                    "errors": reference.errors,
                    "what": "pgbench, the same conditional UPDATE",
                },
                "ratio": load.rate_of(201) / reference.tps if reference.tps else 0.0,
                "cpu_ms_per_op": per_operation(usage, done),
            }
        )
    return rows
