"""`songda dlq count`, `songda dlq read` and `songda events republish` against the embedded broker (what works on
Tansu works on Kafka: they speak only the Kafka protocol through aiokafka) and a service's database."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.cli import main
from shared.events.consumer import EventConsumer
from shared.events.envelope import Envelope, new_event
from shared.events.outbox import add_event
from shared.events.relay import OutboxRelay
from shared.events.topics import dlq_topic
from tests.support import read_topic


def _record(
    topic: str, offset: int, value: bytes, key: bytes = b"o-1", event_id: str = ""
) -> ConsumerRecord[bytes, bytes]:
    """A record as the relay sends it (with its `type` and `event_id` headers)."""
    return ConsumerRecord(
        topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=key, value=value, checksum=None,
        serialized_key_size=0, serialized_value_size=0,
        headers=(("type", b"probe.failed.v1"), ("event_id", event_id.encode())),
    )  # fmt: skip


async def test_dead_letters_are_counted_read_and_counted_again_once_replayed(
    bootstrap: str, sessionmaker: async_sessionmaker[AsyncSession], topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def failing(session: AsyncSession, event: Envelope) -> None:
        raise RuntimeError("carrier said no")

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    consumer = EventConsumer(
        service="dispatch", sessionmaker=sessionmaker, bootstrap_servers=bootstrap, topics=[topic],
        handlers={"probe.failed.v1": failing}, dlq_producer=producer, max_attempts=1, retry_seconds=0,
    )  # fmt: skip
    try:
        event = new_event("probe.failed.v1", source="probe", subject="o-1", data={})
        await consumer.handle_record(_record(topic, 7, event.to_bytes(), event_id=str(event.id)))
        await consumer.handle_record(_record(topic, 8, b"not an envelope", key=b"o-2"))
    finally:
        await consumer.stop()
        await producer.stop()
    dlq = dlq_topic(topic)

    assert await asyncio.to_thread(main, ["dlq", "count", dlq, "--bootstrap-servers", bootstrap]) == 0
    out = capsys.readouterr().out
    assert [line.split() for line in out.splitlines() if line.startswith(dlq)] == [[dlq, "2", "2"]]

    assert await asyncio.to_thread(main, ["dlq", "read", dlq, "--bootstrap-servers", bootstrap, "--values"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first, second = sorted((line for line in lines if "\tkey " in line), key=lambda line: "key o-2" in line)
    assert f"from {topic}@0:7" in first
    assert "probe.failed.v1" in first
    assert "consumer dispatch" in first
    assert "RuntimeError('carrier said no')" in first
    assert f"event {event.id}" in first
    assert "undecodable envelope" in second
    assert "  not an envelope" in lines
    assert lines[-1] == f"2 record(s) read from {dlq}"

    assert await asyncio.to_thread(main, ["dlq", "replay-topic", dlq, "--bootstrap-servers", bootstrap]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["dlq", "count", dlq, "--bootstrap-servers", bootstrap]) == 0
    out = capsys.readouterr().out
    assert [line.split() for line in out.splitlines() if line.startswith(dlq)] == [[dlq, "2", "0"]]


async def test_republish_sends_an_orders_events_again_and_one_event_by_id(
    bootstrap: str, sessionmaker: async_sessionmaker[AsyncSession], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"s{uuid.uuid4().hex[:8]}"
    events = [
        new_event("order.placed.v1", source=source, subject="o-1", data={}),
        new_event("order.paid.v1", source=source, subject="o-1", data={}),
        new_event("order.placed.v1", source=source, subject="o-2", data={}),
    ]
    async with sessionmaker() as session, session.begin():
        for event in events:
            await add_event(session, event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    relay = OutboxRelay(service=source, engine=sessionmaker.kw["bind"], sessionmaker=sessionmaker, producer=producer)
    try:
        assert await relay.publish_batch() == (3, 0)
        assert await relay.publish_batch() == (0, 0)

        command = ["events", "republish", "--database-url", db_url, "--subject", "o-1"]
        assert await asyncio.to_thread(main, command) == 0
        assert capsys.readouterr().out.startswith("2 event(s) back in the outbox backlog")
        assert await relay.publish_batch() == (2, 0)
        one = ["events", "republish", "--database-url", db_url, "--event-id", str(events[2].id)]
        assert await asyncio.to_thread(main, one) == 0
        assert await relay.publish_batch() == (1, 0)
        assert await asyncio.to_thread(main, ["events", "republish", "--database-url", db_url]) == 2
    finally:
        await producer.stop()

    records = await read_topic(bootstrap, f"{source}.events", expected=6)
    sent: dict[bytes, list[uuid.UUID]] = {}
    for record in records:  # in order within a partition, so within an order
        sent.setdefault(record.key, []).append(Envelope.from_bytes(record.value).id)
    first, paid, other = (e.id for e in events)
    assert sent == {b"o-1": [first, paid, first, paid], b"o-2": [other, other]}
