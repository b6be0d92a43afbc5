"""Consumers turn at-least-once delivery into one effect: duplicates, redelivery after a crash, poison records."""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.events.consumer import EventConsumer
from shared.events.dlq import replay_dlq
from shared.events.envelope import Envelope, new_event
from shared.events.outbox import add_event
from shared.events.topics import dlq_topic
from shared.stack.broker import create_topics
from tests.support import count, read_topic


@pytest.fixture
async def ledger(engine: AsyncEngine) -> None:
    """`credit`: the effect (a counter bumped per event); `switch`: whether the handler is broken right now."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE credit (subject text PRIMARY KEY, times int NOT NULL)"))
        await conn.execute(text("CREATE TABLE switch (broken bool NOT NULL)"))
        await conn.execute(text("INSERT INTO switch VALUES (false)"))


async def on_paid(session: AsyncSession, event: Envelope) -> None:
    if await session.scalar(text("SELECT broken FROM switch")):
        raise RuntimeError("downstream rule rejects this event")
    await session.execute(
        text("INSERT INTO credit VALUES (:s, 1) ON CONFLICT (subject) DO UPDATE SET times = credit.times + 1"),
        {"s": event.subject},
    )
    # A reaction publishes its own event, in the same transaction as the effect and the inbox row.
    await add_event(session, new_event("probe.credited.v1", source="redemption", subject=event.subject, data={}))


async def _times(sessionmaker: async_sessionmaker[AsyncSession], subject: str) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(text("SELECT times FROM credit WHERE subject = :s"), {"s": subject}) or 0)


def _consumer(
    sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, topic: str, producer: AIOKafkaProducer, group: str
) -> EventConsumer:
    return EventConsumer(
        service="redemption",
        group_id=group,
        sessionmaker=sessionmaker,
        bootstrap_servers=bootstrap,
        topics=[topic],
        handlers={"order.paid.v1": on_paid},
        dlq_producer=producer,
        max_attempts=3,
        retry_seconds=0.01,
    )


async def _consume_until_quiet(consumer: EventConsumer) -> None:
    """Polls (committing) until records came and then two polls in a row brought nothing."""
    got_any, quiet = False, 0
    for _ in range(100):
        offsets = await consumer.poll_and_handle(timeout_ms=200)
        await consumer.commit(offsets)
        got_any = got_any or bool(offsets)
        quiet = 0 if offsets else quiet + 1
        if got_any and quiet >= 2:
            return
    raise AssertionError("the consumer never went quiet")


@pytest.fixture
async def producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def _paid(subject: str) -> Envelope:
    return new_event("order.paid.v1", source="order", subject=subject, data={"amount": 1200})


async def test_a_duplicate_delivery_has_one_effect(
    ledger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    await create_topics(bootstrap, [topic])
    event = _paid("order-1")
    for _ in range(3):
        await producer.send_and_wait(topic, event.to_bytes(), key=b"order-1")
    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group=f"g-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        handled = 0
        for _ in range(50):
            offsets = await consumer.poll_and_handle(timeout_ms=200)
            await consumer.commit(offsets)
            handled = max(handled, *offsets.values()) if offsets else handled
            if handled >= 3:
                break
        assert handled == 3  # all three copies were read
    finally:
        await consumer.stop()
    assert await _times(sessionmaker, "order-1") == 1
    assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 1
    assert await count(sessionmaker, "SELECT count(*) FROM outbox WHERE type = 'probe.credited.v1'") == 1


async def test_a_crash_between_db_commit_and_offset_commit_redelivers_with_one_effect(
    ledger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    await create_topics(bootstrap, [topic])
    await producer.send_and_wait(topic, _paid("order-2").to_bytes(), key=b"order-2")
    group = f"g-{uuid.uuid4().hex}"

    first = _consumer(sessionmaker, bootstrap, topic, producer, group)
    await first.start()
    offsets = {}
    for _ in range(50):
        offsets = await first.poll_and_handle(timeout_ms=200)
        if offsets:
            break
    assert offsets  # handled and committed to the database ...
    assert await _times(sessionmaker, "order-2") == 1
    await first.stop()  # ... and the process dies before the offset commit.

    second = _consumer(sessionmaker, bootstrap, topic, producer, group)
    await second.start()
    try:
        redelivered = {}
        for _ in range(100):
            redelivered = await second.poll_and_handle(timeout_ms=200)
            if redelivered:
                await second.commit(redelivered)
                break
        assert redelivered == offsets  # the same record came again
    finally:
        await second.stop()
    assert await _times(sessionmaker, "order-2") == 1
    assert await count(sessionmaker, "SELECT count(*) FROM outbox WHERE type = 'probe.credited.v1'") == 1


async def test_a_poison_record_goes_to_the_dlq_after_n_tries_and_replays(
    ledger: None,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    dlq = dlq_topic(topic)
    await create_topics(bootstrap, [topic, dlq])
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE switch SET broken = true"))
    event = _paid("order-3")
    await producer.send_and_wait(topic, event.to_bytes(), key=b"order-3")
    await producer.send_and_wait(topic, b"{not json", key=b"order-x")
    group = f"g-{uuid.uuid4().hex}"
    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group)
    await consumer.start()
    try:
        await _consume_until_quiet(consumer)
        dead = await read_topic(bootstrap, dlq, expected=2)
        assert len(dead) == 2
        by_key = {record.key: dict(record.headers) for record in dead}
        assert b"downstream rule rejects this event" in by_key[b"order-3"]["songda-error"]
        assert by_key[b"order-3"]["songda-original-topic"] == topic.encode()
        assert by_key[b"order-3"]["songda-consumer"] == group.encode()
        assert b"undecodable" in by_key[b"order-x"]["songda-error"]
        assert await _times(sessionmaker, "order-3") == 0
        assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 0  # the failures left nothing behind

        # The cause is fixed; the operator replays the dead letters.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE switch SET broken = false"))
        report = await replay_dlq(bootstrap, dlq, idle_polls=2)
        assert report.replayed == 2
        for _ in range(50):
            await consumer.commit(await consumer.poll_and_handle(timeout_ms=200))
            if await _times(sessionmaker, "order-3") == 1:
                break
        assert await _times(sessionmaker, "order-3") == 1
        # The malformed record is still poison: it came back to the DLQ, and is all a second replay sends.
        assert len(await read_topic(bootstrap, dlq, expected=3)) == 3
        assert (await replay_dlq(bootstrap, dlq, idle_polls=2)).replayed == 1
    finally:
        await consumer.stop()
    replayed = await read_topic(bootstrap, topic, expected=5)
    assert [orjson.loads(r.value)["id"] for r in replayed if r.key == b"order-3"] == [str(event.id)] * 2
