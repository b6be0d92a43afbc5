"""Consumers turn at-least-once delivery into one effect: duplicates, redelivery after a crash, poison records."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from deploy import cli
from deploy.local.broker import create_topics
from shared.db import create_engine, create_sessionmaker
from shared.events.consumer import REPLAYED_HEADER, EventConsumer
from shared.events.contracts import EventView, handles
from shared.events.dlq import replay_dlq
from shared.events.envelope import Envelope, new_event
from shared.events.inspect import group_lag
from shared.events.outbox import add_event
from shared.events.topics import dlq_topic
from tests.shared.tcp_proxy import TcpProxy
from tests.support import count, eventually, read_topic, statements


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


@pytest.fixture
async def journal(engine: AsyncEngine) -> None:
    """`applied`: every event applied, in the order applied; `poison`: the events the handler refuses right now."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE applied (n serial PRIMARY KEY, subject text NOT NULL, seq int NOT NULL)"))
        await conn.execute(text("CREATE TABLE poison (event_id uuid PRIMARY KEY)"))


async def on_moved(session: AsyncSession, event: Envelope) -> None:
    if await session.scalar(text("SELECT count(*) FROM poison WHERE event_id = :id"), {"id": event.id}):
        raise RuntimeError("the handler cannot take this event")
    await session.execute(
        text("INSERT INTO applied (subject, seq) VALUES (:s, :q)"), {"s": event.subject, "q": event.data["seq"]}
    )


def _moved(subject: str, seq: int) -> Envelope:
    return new_event("order.moved.v1", source="order", subject=subject, data={"seq": seq})


def _journal_consumer(
    sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, topic: str, producer: AIOKafkaProducer
) -> EventConsumer:
    return EventConsumer(
        service="redemption",
        group_id=f"g-{uuid.uuid4().hex}",
        sessionmaker=sessionmaker,
        bootstrap_servers=bootstrap,
        topics=[topic],
        handlers={"order.moved.v1": on_moved},
        dlq_producer=producer,
        max_attempts=3,
        retry_seconds=0.01,
        max_backoff_seconds=0.2,
    )


async def _applied(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, list[int]]:
    async with sessionmaker() as session:
        rows = (await session.execute(text("SELECT subject, seq FROM applied ORDER BY n"))).all()
    by_subject: dict[str, list[int]] = {}
    for subject, seq in rows:
        by_subject.setdefault(subject, []).append(seq)
    return by_subject


async def _send(producer: AIOKafkaProducer, topic: str, events: list[Envelope]) -> None:
    for event in events:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())


async def _consuming(consumer: EventConsumer) -> None:
    while True:
        await consumer.commit(await consumer.poll_and_handle(timeout_ms=100))


async def test_a_database_outage_dead_letters_nothing_and_applies_every_event_in_order(
    journal: None,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    dlq = dlq_topic(topic)
    await create_topics(bootstrap, [topic, dlq])
    server = urlsplit(db_url)
    proxy = TcpProxy(server.hostname or "127.0.0.1", server.port or 5432)
    proxied = urlunsplit(server._replace(netloc=f"{server.username}@127.0.0.1:{await proxy.start()}"))
    engine = create_engine(proxied, pool_size=2)
    consumer = _journal_consumer(create_sessionmaker(engine), bootstrap, topic, producer)
    await consumer.start()
    consuming = asyncio.create_task(_consuming(consumer))
    try:
        await _send(producer, topic, [_moved("order-1", 0)])
        await eventually(lambda: _applied_is(sessionmaker, {"order-1": [0]}))

        proxy.cut()  # the database is gone, for far longer than max_attempts retries take
        await _send(producer, topic, [_moved("order-1", 1), _moved("order-2", 0), _moved("order-1", 2)])
        await eventually(lambda: _at_least(proxy, 12), within=30)
        proxy.restore()

        await eventually(lambda: _applied_is(sessionmaker, {"order-1": [0, 1, 2], "order-2": [0]}), within=30)
    finally:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
        await consumer.stop()
        await engine.dispose()
        await proxy.stop()
    assert await read_topic(bootstrap, dlq, expected=0, within=1) == []
    assert await count(sessionmaker, "SELECT count(*) FROM parked_event") == 0
    assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 4


async def _at_least(proxy: TcpProxy, refused: int) -> bool:
    return proxy.refused >= refused


async def _applied_is(sessionmaker: async_sessionmaker[AsyncSession], expected: dict[str, list[int]]) -> bool:
    return await _applied(sessionmaker) == expected


async def test_a_poison_event_parks_its_subjects_later_events_until_replayed_or_discarded(
    journal: None,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    db_url: str,
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dlq = dlq_topic(topic)
    await create_topics(bootstrap, [topic, dlq])
    poisoned, discarded = _moved("order-a", 0), _moved("order-c", 0)
    async with engine.begin() as conn:
        for event in (poisoned, discarded):
            await conn.execute(text("INSERT INTO poison VALUES (:id)"), {"id": event.id})
    await _send(
        producer,
        topic,
        [poisoned, _moved("order-b", 0), _moved("order-a", 1), discarded, _moved("order-a", 2), _moved("order-c", 1)],
    )
    consumer = _journal_consumer(sessionmaker, bootstrap, topic, producer)
    await consumer.start()
    try:
        await _consume_until_quiet(consumer)
        # order-b is not held up by order-a; order-a's later events wait behind its dead letter.
        assert await _applied(sessionmaker) == {"order-b": [0]}
        dead = await read_topic(bootstrap, dlq, expected=2)
        assert sorted(record.key for record in dead) == [b"order-a", b"order-c"]
        assert all(b"the handler cannot take this event" in dict(r.headers)["songda-error"] for r in dead)

        await asyncio.to_thread(cli.main, ["dlq", "list", "--database-url", db_url])
        listed = capsys.readouterr().out
        assert f"order-a\torder.moved.v1\tevent {poisoned.id}" in listed
        assert "2 waiting behind" in listed
        assert "2 dead letter(s) held" in listed

        # The handler is fixed for order-a; the operator replays it, and discards order-c's.
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM poison WHERE event_id = :id"), {"id": poisoned.id})
        await asyncio.to_thread(cli.main, ["dlq", "replay", "--database-url", db_url, "order-a"])
        await asyncio.to_thread(cli.main, ["dlq", "discard", "--database-url", db_url, "order-c"])
        await _send(producer, topic, [_moved("order-a", 3), discarded])  # a later event, and a stray copy
        await _consume_until_quiet(consumer)
    finally:
        await consumer.stop()
    assert await _applied(sessionmaker) == {"order-b": [0], "order-a": [0, 1, 2, 3], "order-c": [1]}
    assert await count(sessionmaker, "SELECT count(*) FROM parked_event") == 0
    assert len(await read_topic(bootstrap, dlq, expected=2)) == 2


class PaidView(EventView):
    amount: int


async def test_an_event_that_does_not_fit_its_view_is_dead_lettered_at_once(
    ledger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Retrying the same bytes against the same view cannot help: one attempt, then the DLQ (not `max_attempts`).
    An event the handler is not concerned with is skipped before any transaction, without an inbox row."""
    dlq = dlq_topic(topic)
    await create_topics(bootstrap, [topic, dlq])
    seen: list[int] = []

    async def on_paid_view(session: AsyncSession, event: Envelope, data: PaidView) -> None:
        seen.append(data.amount)
        await on_paid(session, event)

    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group=f"g-{uuid.uuid4().hex}")
    consumer.handlers = {"order.paid.v1": handles(PaidView, on_paid_view, concerns=lambda data: data.amount > 0)}
    for subject, data in (("order-5", {"amount": "twelve"}), ("order-6", {"amount": 0}), ("order-7", {"amount": 9})):
        event = new_event("order.paid.v1", source="order", subject=subject, data=data)
        await producer.send_and_wait(topic, event.to_bytes(), key=subject.encode())
    await consumer.start()
    try:
        with caplog.at_level(logging.WARNING):
            await _consume_until_quiet(consumer)
    finally:
        await consumer.stop()
    dead = await read_topic(bootstrap, dlq, expected=1)
    assert [record.key for record in dead] == [b"order-5"]
    assert b"does not fit PaidView" in dict(dead[0].headers)["songda-error"]
    assert [r.attempt for r in caplog.records if r.getMessage() == "event handler failed"] == [1]  # type: ignore[attr-defined]
    assert seen == [9]
    assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 1
    assert await count(sessionmaker, "SELECT count(*) FROM parked_event WHERE subject = 'order-5' AND held") == 1


async def test_an_event_its_handler_asks_the_database_about_is_skipped_when_it_finds_nothing_to_do(
    ledger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    """`asks` is one statement outside any transaction: an event it finds nothing to do for leaves no inbox row;
    a question that fails (not for want of a database) is no answer, and the handler runs."""
    await create_topics(bootstrap, [topic])

    async def wanted(connection: asyncpg.Connection, event: Envelope, data: PaidView) -> bool:
        return bool(await connection.fetchval("SELECT $1::int > 100 FROM switch", data.amount))

    async def on_paid_view(session: AsyncSession, event: Envelope, data: PaidView) -> None:
        await on_paid(session, event)

    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group=f"g-{uuid.uuid4().hex}")
    consumer.handlers = {"order.paid.v1": handles(PaidView, on_paid_view, asks=wanted)}
    for subject, amount in (("order-8", 50), ("order-9", 500)):
        event = new_event("order.paid.v1", source="order", subject=subject, data={"amount": amount})
        await producer.send_and_wait(topic, event.to_bytes(), key=subject.encode())
    await consumer.start()
    try:
        await _consume_until_quiet(consumer)
        assert (await _times(sessionmaker, "order-8"), await _times(sessionmaker, "order-9")) == (0, 1)
        assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 1

        async def broken(connection: asyncpg.Connection, event: Envelope, data: PaidView) -> bool:
            return bool(await connection.fetchval("SELECT no_such_column FROM switch"))

        consumer.handlers = {"order.paid.v1": handles(PaidView, on_paid_view, asks=broken)}
        await producer.send_and_wait(topic, _paid("order-10").to_bytes(), key=b"order-10")
        await _consume_until_quiet(consumer)
    finally:
        await consumer.stop()
    assert await _times(sessionmaker, "order-10") == 1


OUTCOMES = ("handled", "duplicate", "parked", "released", "unparked", "dead_lettered", "ignored")


def _record(
    topic: str, offset: int, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=key, value=value, checksum=None,
        serialized_key_size=0, serialized_value_size=0, headers=headers,
    )  # fmt: skip


def _published(topic: str, offset: int, event: Envelope, *extra: tuple[str, bytes]) -> ConsumerRecord[bytes, bytes]:
    """A record as the relay sends the event: its type and id in headers."""
    headers = [("type", event.type.encode()), ("event_id", str(event.id).encode()), *extra]
    return _record(topic, offset, event.to_bytes(), event.subject.encode(), headers)


async def _outcome(consumer: EventConsumer, record: ConsumerRecord[bytes, bytes]) -> list[str]:
    """What the consumer made of the record, as its `songda_consumer_events_total` counters tell."""

    def counts() -> dict[str, float]:
        labels = {"service": consumer.service, "topic": record.topic}
        return {o: REGISTRY.get_sample_value(_HANDLED, labels | {"outcome": o}) or 0.0 for o in OUTCOMES}

    before = counts()
    await consumer.handle_record(record)
    after = counts()
    return [outcome for outcome in OUTCOMES if after[outcome] > before[outcome]]


_HANDLED = "songda_consumer_events_total"


async def test_a_record_of_a_type_without_handler_is_passed_over_on_its_header_undecoded(
    ledger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    """The relay's `type` header decides before the value is read: an unhandled type is ignored even when its value
    is not an envelope at all; a record without the header, or naming a handled type, takes the full path (an
    undecodable one is dead-lettered)."""
    dlq = dlq_topic(topic)
    await create_topics(bootstrap, [topic, dlq])
    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group=f"g-{uuid.uuid4().hex}")
    try:
        unhandled = [("type", b"order.cancelled.v1"), ("event_id", uuid.uuid4().hex.encode())]
        assert await _outcome(consumer, _record(topic, 1, b"{not json", b"unhandled", unhandled)) == ["ignored"]
        assert await _outcome(consumer, _record(topic, 2, b"{not json", b"headless", [])) == ["dead_lettered"]
        handled = [("type", b"order.paid.v1"), ("event_id", uuid.uuid4().hex.encode())]
        assert await _outcome(consumer, _record(topic, 3, b"{not json", b"handled-type", handled)) == ["dead_lettered"]
        paid = _paid("order-11")
        assert await _outcome(consumer, _published(topic, 4, paid)) == ["handled"]
        headless = _record(topic, 5, _paid("order-12").to_bytes(), b"order-12", [])
        assert await _outcome(consumer, headless) == ["handled"]
    finally:
        await consumer.stop()
    dead = await read_topic(bootstrap, dlq, expected=2)
    assert sorted(record.key for record in dead) == [b"handled-type", b"headless"]
    assert (await _times(sessionmaker, "order-11"), await _times(sessionmaker, "order-12")) == (1, 1)
    assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 2


async def test_every_outcome_of_an_event_under_its_subjects_lock(
    journal: None,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    """Handled, duplicate (of a handled event, of a parked one, of a dead letter), dead-lettered, parked behind it,
    released by its replayed copy, then unparked in order: each from the one claim statement's reading."""
    dlq = dlq_topic(topic)
    await create_topics(bootstrap, [topic, dlq])
    consumer = _journal_consumer(sessionmaker, bootstrap, topic, producer)
    first, poisoned, behind = _moved("order-1", 0), _moved("order-2", 0), _moved("order-2", 1)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO poison VALUES (:id)"), {"id": poisoned.id})
    try:
        assert await _outcome(consumer, _published(topic, 10, first)) == ["handled"]
        assert await _outcome(consumer, _published(topic, 11, first)) == ["duplicate"]
        inbox = 'SELECT consumer, type, topic, partition, "offset" FROM inbox WHERE event_id = :id'
        async with sessionmaker() as session:
            row = (await session.execute(text(inbox), {"id": first.id})).one()
        assert tuple(row) == (consumer.group_id, "order.moved.v1", topic, 0, 10)  # the first copy's

        assert await _outcome(consumer, _published(topic, 12, poisoned)) == ["dead_lettered"]
        assert await _outcome(consumer, _published(topic, 13, behind)) == ["parked"]
        assert await _outcome(consumer, _published(topic, 14, behind)) == ["duplicate"]  # already parked
        assert await _outcome(consumer, _published(topic, 15, poisoned)) == ["duplicate"]  # held: not replayed
        assert await _applied(sessionmaker) == {"order-1": [0]}
        parked = 'SELECT event_id, held, "offset" FROM parked_event ORDER BY id'
        async with sessionmaker() as session:
            rows = [tuple(r) for r in (await session.execute(text(parked))).all()]
        assert rows == [(poisoned.id, True, 12), (behind.id, False, 13)]

        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM poison"))
        replayed = _published(topic, 16, poisoned, (REPLAYED_HEADER, b"x"))
        assert await _outcome(consumer, replayed) == ["released"]
        assert await _applied(sessionmaker) == {"order-1": [0]}  # released, applied by the next look
        await consumer.apply_released()
        assert await _applied(sessionmaker) == {"order-1": [0], "order-2": [0, 1]}
        assert await count(sessionmaker, "SELECT count(*) FROM parked_event") == 0
        assert await _outcome(consumer, replayed) == ["duplicate"]  # handled now
        assert await _outcome(consumer, _published(topic, 17, _moved("order-2", 2))) == ["handled"]
    finally:
        await consumer.stop()
    assert await _applied(sessionmaker) == {"order-1": [0], "order-2": [0, 1, 2]}
    assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 4
    assert len(await read_topic(bootstrap, dlq, expected=1)) == 1


async def test_a_handled_event_is_three_statements_of_the_consumers_own_around_its_handlers(
    journal: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    consumer = _journal_consumer(sessionmaker, bootstrap, topic, producer)
    try:
        with statements(sessionmaker) as sent:
            await consumer.handle_record(_published(topic, 1, _moved("order-1", 0)))
    finally:
        await consumer.stop()
    # Sorted: the driver logs its statements once they are done, SQLAlchemy its own before they start.
    assert sorted(" ".join(statement.split()[:2]) for statement in sent) == [
        "BEGIN;",
        "COMMIT;",
        "INSERT INTO",  # the handler's effect
        "SELECT claimed,",  # the subject's lock and the claim, in one call
        "SELECT count(*)",  # the handler's poison check
    ]
    assert await _applied(sessionmaker) == {"order-1": [0]}


async def test_two_members_given_the_same_event_at_once_apply_it_once(
    journal: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    """The second waits on the subject's lock while the first handles the event, then finds it handled."""

    async def slowly(session: AsyncSession, event: Envelope) -> None:
        await session.execute(text("SELECT pg_sleep(0.2)"))
        await on_moved(session, event)

    members = [_journal_consumer(sessionmaker, bootstrap, topic, producer) for _ in range(2)]
    for n, member in enumerate(members):
        member.group_id = members[0].group_id
        member.service = f"member-{n}"  # its own outcome counters
        member.handlers = {"order.moved.v1": slowly}
    event = _moved("order-1", 0)
    try:
        outcomes = await asyncio.gather(*(_outcome(m, _published(topic, 1, event)) for m in members))
    finally:
        for member in members:
            await member.stop()
    assert sorted(outcomes) == [["duplicate"], ["handled"]]
    assert await _applied(sessionmaker) == {"order-1": [0]}
    assert await count(sessionmaker, "SELECT count(*) FROM inbox") == 1


async def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    """The records of the topic the group has committed, over its partitions, read without joining the group (`songda
    lag`'s way); None when it has committed nothing."""
    rows = await group_lag(bootstrap, group, [topic])
    return sum(row.committed or 0 for row in rows) if rows else None


async def test_run_commits_its_offsets_at_the_interval_and_at_stop(
    ledger: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    """Offsets are committed every `offset_commit_seconds`, not after every fetch; a stop commits what was handled."""
    await create_topics(bootstrap, [topic])
    subjects = [f"order-c{n}" for n in range(3)]
    for subject in subjects:
        await producer.send_and_wait(topic, _paid(subject).to_bytes(), key=subject.encode())
    group = f"g-{uuid.uuid4().hex}"
    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group)
    consumer.offset_commit_seconds = 3600.0
    running = asyncio.create_task(consumer.run())
    try:

        async def all_applied() -> bool:
            return [await _times(sessionmaker, subject) for subject in subjects] == [1, 1, 1]

        await eventually(all_applied, within=30)
        assert await _committed(bootstrap, group, topic) is None  # handled, its offsets not committed yet
    finally:
        consumer.stopping.set()
        await asyncio.wait_for(running, 30)
    assert await _committed(bootstrap, group, topic) == 3

    consumer = _consumer(sessionmaker, bootstrap, topic, producer, group)
    consumer.offset_commit_seconds = 0.0  # every fetch
    running = asyncio.create_task(consumer.run())
    try:
        await producer.send_and_wait(topic, _paid("order-c3").to_bytes(), key=b"order-c3")

        async def committed_while_running() -> bool:
            return await _committed(bootstrap, group, topic) == 4

        await eventually(committed_while_running, within=30)
    finally:
        consumer.stopping.set()
        await asyncio.wait_for(running, 30)
    assert [await _times(sessionmaker, s) for s in [*subjects, "order-c3"]] == [1, 1, 1, 1]


async def test_a_database_whose_migrations_have_not_run_is_waited_for_not_dead_lettered(
    journal: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
) -> None:
    """A replica of a new version started before its migration: the claim's function is missing, and the event waits
    (retried as an unreachable database is) instead of being dead-lettered; once the migration runs it is applied."""
    signature = "songda_claim_event(text, bigint, text, uuid, text, text, int, bigint)"
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"ALTER FUNCTION {signature} RENAME TO songda_claim_event_later"))
    consumer = _journal_consumer(sessionmaker, bootstrap, topic, producer)
    retries = (
        REGISTRY.get_sample_value(
            "songda_consumer_infrastructure_retries_total", {"service": "redemption", "topic": topic}
        )
        or 0.0
    )
    handling = asyncio.create_task(consumer.handle_record(_published(topic, 1, _moved("order-1", 0))))
    try:

        async def retried() -> bool:
            seen = REGISTRY.get_sample_value(
                "songda_consumer_infrastructure_retries_total", {"service": "redemption", "topic": topic}
            )
            return (seen or 0.0) >= retries + 3

        await eventually(retried)
        assert not handling.done()
        assert await count(sessionmaker, "SELECT count(*) FROM parked_event") == 0
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text(f"ALTER FUNCTION {signature.replace('songda_claim_event', 'songda_claim_event_later')}"
                     " RENAME TO songda_claim_event")
            )  # fmt: skip
    await asyncio.wait_for(handling, 30)
    await consumer.stop()
    assert await _applied(sessionmaker) == {"order-1": [0]}
