"""Signed SF callbacks through the gateway (acknowledged/s, ack p99) and how fast dispatch applies them, beside
pgbench doing the same inserts. The callbacks are signed first and sent by wrk (a C client, as pgbench is), so the
load's own CPU is not taken from the stack it measures."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from deploy.bench.context import Bench, per_operation
from deploy.bench.reference_db import reference_database
from deploy.bench.tools import Prepared, pgbench, write_requests, wrk
from deploy.bench.walk import WalkFailed, call, first_sku, place_paid_order
from deploy.local.sandboxes.carriers.simulator import credentials
from deploy.local.seed import DEMO_STORE, DEMO_STORE_ID
from services.dispatch.carriers import WIRES

CONCURRENCY = 32
CARRIER = "sf"
DRAIN_SECONDS = 120
# Callbacks signed before the run, per second of it: wrk sends them in turn, and again from the first if it runs out.
PER_SECOND_PREPARED = 2_000
PACED_RATE = 500  # issue 12's goal for callbacks accepted and applied, per second
PROBE_SECONDS = 3

CALLBACK_TABLE = """
CREATE TABLE carrier_callback (
  id uuid PRIMARY KEY, carrier text, query jsonb, headers jsonb, body bytea, body_sha256 text, body_size int,
  received_at timestamptz, outcome text, error text, delivery_id uuid, offer_id uuid, processed_at timestamptz,
  attempts int);
CREATE INDEX ix_carrier_callback_outcome ON carrier_callback (outcome, received_at);
"""
CALLBACK_INSERT = """INSERT INTO carrier_callback VALUES (gen_random_uuid(), 'sf', '{}',
  '{"content-type": "application/json", "host": "127.0.0.1"}',
  convert_to(repeat('{"order_status": 12, "shop_order_id": "x"}', 4), 'UTF8'), md5(random()::text), 180, now(),
  'pending', NULL, gen_random_uuid(), gen_random_uuid(), NULL, 0);
"""


async def _live_offer(bench: Bench) -> dict[str, Any]:
    """A delivery placed with SF that the simulator sits on (`sim:slow_accept`), and its offer."""
    async with httpx.AsyncClient(base_url=bench.url("gateway"), timeout=30) as client:
        store = f"/v1/stores/{DEMO_STORE_ID}"
        await call(
            client,
            bench,
            "merchant",
            "PATCH",
            store,
            json={"dispatch_strategy": {"kind": "preferred", "carriers": [CARRIER]}},
        )
        orders = await bench.connect("order")
        try:
            order_id = await place_paid_order(client, orders, bench, await first_sku(client, bench), "sim:slow_accept")
            await call(client, bench, "merchant", "POST", f"/v1/orders/{order_id}/accept")
            await call(client, bench, "merchant", "POST", f"/v1/orders/{order_id}/ready")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                page = await call(client, bench, "merchant", "GET", f"/v1/deliveries?order_id={order_id}")
                details = [
                    await call(client, bench, "merchant", "GET", f"/v1/deliveries/{d['id']}") for d in page["items"]
                ]
                offers = [
                    o for d in details for o in d.get("offers") or [] if o["carrier"] == CARRIER and o["waybill_id"]
                ]
                if offers:
                    return dict(offers[0])
                await asyncio.sleep(0.5)
            raise WalkFailed(f"no SF offer with a waybill for order {order_id}")
        finally:
            await orders.close()
            await call(
                client, bench, "merchant", "PATCH", store, json={"dispatch_strategy": DEMO_STORE["dispatch_strategy"]}
            )


async def _credentials(bench: Bench) -> Any:
    async with httpx.AsyncClient(base_url=bench.url("gateway"), timeout=30) as client:
        accounts = await call(client, bench, "merchant", "GET", f"/v1/carriers/accounts?store_id={DEMO_STORE_ID}")
    # The app key is shown masked; the simulator names the shop after it.
    app_key = next(a["shop_id"].removeprefix("shop-") for a in accounts if a["carrier"] == CARRIER)
    return credentials("songda-carrier-simulator", CARRIER, app_key)


async def _outcomes(bench: Bench, since: datetime, ended: datetime) -> tuple[dict[str, int], float, float]:
    """Outcome counts of the callbacks received since `since`, the seconds from the first received to the last
    processed, and how long after the load `ended` the last was processed (the backlog it left)."""
    connection = await bench.connect("dispatch")
    try:
        rows = await connection.fetch(
            "SELECT outcome, count(*) AS n FROM carrier_callback WHERE received_at >= $1 GROUP BY outcome", since
        )
        span, last = await connection.fetchrow(
            "SELECT extract(epoch FROM max(processed_at) - min(received_at)), max(processed_at) FROM carrier_callback"
            " WHERE received_at >= $1",
            since,
        )
    finally:
        await connection.close()
    lag = max((last - ended).total_seconds(), 0.0) if last else 0.0
    return {row["outcome"]: row["n"] for row in rows}, float(span or 0.0), lag


def _drained(bench: Bench, since: datetime, ended: datetime) -> tuple[dict[str, int], float, float]:
    """`_outcomes` once none received since `since` is pending (or DRAIN_SECONDS passed)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        outcomes, span, lag = asyncio.run(_outcomes(bench, since, ended))
        if not outcomes.get("pending") or time.monotonic() > deadline:
            return outcomes, span, lag
        time.sleep(0.5)


def _requests(offer: dict[str, Any], creds: Any, count: int, before: int = 0) -> list[Prepared]:
    """`count` signed callbacks about the offer, each with an action time of its own (a second apart, the last a
    minute and `before` seconds ago), so that each is a report to apply, not a copy of one. SF's action time is the
    push time the callback is sealed at."""
    wire = WIRES[CARRIER]
    last = int(datetime.now(UTC).timestamp()) - 60 - before
    prepared = []
    for n in range(count):
        fields = {
            "shop_order_id": offer["shop_order_id"],
            "waybill_id": offer["waybill_id"],
            "status": wire.emits["rider_assigned"],
        }
        message = wire.encode_callback(creds, fields, datetime.fromtimestamp(last - count + n, UTC))
        query = f"?{urlencode(message.params)}" if message.params else ""
        prepared.append(Prepared("POST", f"/v1/carriers/{CARRIER}/callback{query}", message.body, message.content_type))
    return prepared


def measure_callbacks(bench: Bench) -> list[dict[str, Any]]:
    """As fast as the answers come, then paced at about the goal's rate (`PACED_RATE`): whether the worker applies
    them as fast as they are accepted there."""
    offer = asyncio.run(_live_offer(bench))
    creds = asyncio.run(_credentials(bench))
    count = PER_SECOND_PREPARED * bench.seconds
    # The paced run's callbacks are sealed after the first run's, so that they are news too.
    first = write_requests(bench.workdir / "callbacks.txt", _requests(offer, creds, count, before=count))
    paced = write_requests(bench.workdir / "callbacks-paced.txt", _requests(offer, creds, count))
    flat_out = _measure(bench, first)
    return [flat_out, _measure(bench, paced, pace_ms=_pace_ms(bench, offer, creds, flat_out["songda"]["p50"]))]


def _pace_ms(bench: Bench, offer: dict[str, Any], creds: Any, flat_out_p50: float) -> int:
    """The wait before each request that makes CONCURRENCY connections send about PACED_RATE a second: a connection
    sends again once answered and after its wait, and an answer comes sooner paced than flat out, so a short probe
    paced by the flat-out answer time measures the paced one (older callbacks: stale news, never reported)."""
    period_ms = CONCURRENCY * 1000 / PACED_RATE
    probe = write_requests(
        bench.workdir / "callbacks-probe.txt", _requests(offer, creds, PACED_RATE * PROBE_SECONDS, before=10**6)
    )
    first_guess = max(round(period_ms - flat_out_p50 * 1000), 1)
    since = datetime.now(UTC)
    paced_p50 = wrk(bench.url("gateway") + "/", {}, CONCURRENCY, PROBE_SECONDS, probe, first_guess).p50
    _drained(bench, since, datetime.now(UTC))  # the paced run starts with no backlog
    return max(round(period_ms - paced_p50 * 1000), 1)


def _measure(bench: Bench, requests: Path, pace_ms: int = 0) -> dict[str, Any]:
    since = datetime.now(UTC)
    usage: dict[str, float] = {}
    with bench.cpu(usage):
        load = wrk(bench.url("gateway") + "/", {}, CONCURRENCY, bench.seconds, requests, pace_ms)
        outcomes, span, lag = _drained(bench, since, datetime.now(UTC))
    processed = sum(n for outcome, n in outcomes.items() if outcome != "pending")
    with reference_database(bench, "bench_callbacks", CALLBACK_TABLE) as database:
        reference = pgbench(
            bench.postgres_url,
            database,
            [],
            CALLBACK_INSERT,
            CONCURRENCY,
            bench.seconds,
            bench.workdir / "pgbench-callbacks",
        )
    how = f"paced at ~{PACED_RATE}/s" if pace_ms else f"{CONCURRENCY} concurrent"
    return {
        "measure": f"signed {CARRIER} callbacks through the gateway, {how}",
        "songda": {
            "rate": load.rate_of(200),
            "p50": load.p50,
            "p99": load.p99,
            "errors": load.requests - load.statuses.get(200, 0),
            "statuses": load.statuses,
            "applied_rate": processed / span if span else 0.0,
            "applied_after_load_seconds": lag,
            "outcomes": outcomes,
            "still_pending": outcomes.get("pending", 0),
        },
        "reference": {
            "rate": reference.tps,
            "p50": reference.p50,
            "p99": reference.p99,
            "errors": reference.errors,
            "what": "pgbench, the same insert",
        },
        "ratio": load.rate_of(200) / reference.tps if reference.tps else 0.0,
        "cpu_ms_per_op": per_operation(usage, load.statuses.get(200, 0)),
    }
