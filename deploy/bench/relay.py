"""The order service's outbox relay: 20,000 rows inserted at once, timed until all are published, beside a raw
aiokafka producer sending the same messages to the same broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from deploy.bench.context import Bench, per_operation
from deploy.local.broker import create_topics

ROWS = 20_000
TOPIC = "order.events"
RAW_TOPIC = "bench.relay"  # the raw producer's copies go where no consumer reads them
TYPE = "bench.relayed.v1"  # a type no consumer handles: skipped on arrival
WITHIN = 180


def _envelopes() -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "id": str(uuid.uuid4()),
            "type": TYPE,
            "source": "order",
            "subject": f"bench-{n % 500}",
            "time": now,
            "correlation_id": None,
            "causation_id": None,
            "data": {"n": n},
        }
        for n in range(ROWS)
    ]


async def _relay(bench: Bench, envelopes: list[dict[str, Any]], usage: dict[str, float]) -> float:
    """Inserts the rows in one transaction, then times their publishing (and counts the CPU it takes: the inserts'
    is the bench's)."""
    connection = await bench.connect("order")
    try:
        rows = [(uuid.UUID(e["id"]), TOPIC, e["subject"], TYPE, orjson.dumps(e).decode()) for e in envelopes]
        await connection.executemany(
            "INSERT INTO outbox (event_id, topic, key, type, envelope) VALUES ($1, $2, $3, $4, $5::jsonb)", rows
        )
        with bench.cpu(usage):
            started = time.perf_counter()
            deadline = time.monotonic() + WITHIN
            unpublished = "SELECT count(*) FROM outbox WHERE type = $1 AND published_at IS NULL"
            while True:
                if not await connection.fetchval(unpublished, TYPE) or time.monotonic() > deadline:
                    return time.perf_counter() - started
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _raw(bench: Bench, envelopes: list[dict[str, Any]]) -> float:
    await create_topics(bench.bootstrap_servers, [RAW_TOPIC], 4)
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap_servers, acks="all")
    await producer.start()
    try:
        started = time.perf_counter()
        sent = [
            await producer.send(
                RAW_TOPIC,
                key=e["subject"].encode(),
                value=orjson.dumps(e),
                headers=[("type", TYPE.encode()), ("event_id", e["id"].encode())],
            )
            for e in envelopes
        ]
        await asyncio.gather(*sent)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def measure_relay(bench: Bench) -> dict[str, Any]:
    # The raw producer first: after the relay, the services' consumers of the order topic are still passing over
    # its 20,000 records (the faster the relay, the further behind), and a reference measured then shared the machine
    # with them.
    raw_seconds = asyncio.run(_raw(bench, _envelopes()))
    usage: dict[str, float] = {}
    relay_seconds = asyncio.run(_relay(bench, _envelopes(), usage))
    relay_rate, raw_rate = ROWS / relay_seconds, ROWS / raw_seconds
    return {
        "measure": f"outbox relay, {ROWS:,} rows in the order service's outbox",
        "songda": {"rate": relay_rate, "seconds": relay_seconds, "errors": 0},
        "reference": {"rate": raw_rate, "seconds": raw_seconds, "what": "a raw aiokafka producer, same messages"},
        "ratio": relay_rate / raw_rate,
        "cpu_ms_per_op": per_operation(usage, ROWS),
    }
