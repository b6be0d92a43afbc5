"""The outbox is written with the state change or not at all; the relay publishes it in order, and keeps it while
the broker is away."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from fastapi import APIRouter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from deploy.local.broker import TansuBroker, create_topics
from deploy.local.ports import free_port
from services.order.settings import OrderSettings
from shared.db import DbSession
from shared.errors import Conflict
from shared.events.envelope import new_event
from shared.events.epoch import BrokerEpoch
from shared.events.models import OutboxEvent
from shared.events.outbox import add_event
from shared.events.relay import OutboxRelay
from shared.events.topics import EPOCH_TOPIC
from shared.service import build_service_app
from tests.conftest import TEST_STATE
from tests.support import count, eventually, read_topic

PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----
"""


async def _probe_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE probe (id text PRIMARY KEY, seq int NOT NULL DEFAULT 0)"))


def _probe_router(topic: str) -> APIRouter:
    """A use case shaped like the real ones: a state change plus its event, then maybe a domain refusal."""
    router = APIRouter()

    @router.post("/probes/{probe_id}")
    async def create_probe(probe_id: str, session: DbSession, refuse: bool = False) -> dict[str, Any]:
        await session.execute(text("INSERT INTO probe (id) VALUES (:id)"), {"id": probe_id})
        await add_event(session, new_event("probe.created.v1", source="order", subject=probe_id, data={}), topic=topic)
        if refuse:
            raise Conflict("refused after writing")
        return {"id": probe_id}

    return router


async def test_a_use_case_commits_its_change_and_its_event_together_or_neither(
    db_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    await _probe_table(engine)
    settings = OrderSettings(database_url=db_url, jwt_public_keys=PUBLIC_KEY, run_workers=False)
    app = build_service_app(settings, title="t", description="t", routers=[_probe_router(topic)])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
            refused = await client.post("/probes/p1", params={"refuse": True})
            assert refused.status_code == 409
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["detail"] == "refused after writing"
            assert await count(sessionmaker, "SELECT count(*) FROM probe") == 0
            assert await count(sessionmaker, "SELECT count(*) FROM outbox") == 0

            accepted = await client.post("/probes/p2")
            assert accepted.status_code == 200
    assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE id = 'p2'") == 1
    async with sessionmaker() as session:
        row = (await session.scalars(select(OutboxEvent))).one()
    assert (row.key, row.type, row.topic, row.published_at) == ("p2", "probe.created.v1", topic, None)
    assert row.envelope["subject"] == "p2"
    assert row.envelope["correlation_id"]  # the request id, carried into the event


async def _write_events(
    sessionmaker: async_sessionmaker[AsyncSession], topic: str, keys: list[str], per_key: int
) -> None:
    """Events interleaved across keys, one transaction each, `seq` counting up per key."""
    for seq in range(per_key):
        for key in keys:
            async with sessionmaker() as session, session.begin():
                event = new_event("probe.moved.v1", source="order", subject=key, data={"seq": seq})
                await add_event(session, event, topic=topic)


def _sequences(records: list[Any]) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = orjson.loads(record.value)
        assert record.key.decode() == envelope["subject"]
        by_key[envelope["subject"]].append(envelope["data"]["seq"])
    return by_key


async def _backlog(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    return await count(sessionmaker, "SELECT count(*) FROM outbox WHERE published_at IS NULL")


async def test_relay_publishes_each_orders_events_once_and_in_order(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, topic: str
) -> None:
    await create_topics(bootstrap, [topic])
    keys = [f"order-{i}" for i in range(5)]
    await _write_events(sessionmaker, topic, keys, per_key=8)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        # A small batch size forces several rounds, with one key's events spread over them.
        relay = OutboxRelay(service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, batch_size=7)
        while await _backlog(sessionmaker):
            await relay.publish_batch()
    finally:
        await producer.stop()
    records = await read_topic(bootstrap, topic, expected=40)
    assert len(records) == 40
    assert _sequences(records) == {key: list(range(8)) for key in keys}


class _RefusingProducer:
    """Accepts every send but the one of `refused` (an event's sequence number and key), which the broker refuses."""

    def __init__(self, refused: tuple[str, int]) -> None:
        self.refused = refused
        self.sent: list[tuple[str, int]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: Any) -> asyncio.Future[Any]:
        sent = (key.decode(), orjson.loads(value)["data"]["seq"])
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if sent == self.refused:
            delivery.set_exception(KafkaTimeoutError("refused"))
        else:
            self.sent.append(sent)
            delivery.set_result(None)
        return delivery


async def test_a_failed_send_puts_it_and_the_rest_of_its_chain_back_in_the_backlog(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    await _write_events(sessionmaker, topic, ["order-a", "order-b"], per_key=3)
    producer = _RefusingProducer(refused=("order-a", 1))
    relay = OutboxRelay(service="order", engine=engine, sessionmaker=sessionmaker, producer=producer)
    assert await relay.publish_batch() == (4, 1)
    assert producer.sent == [("order-a", 0), ("order-b", 0), ("order-b", 1), ("order-b", 2)]
    async with sessionmaker() as session:
        rows = (await session.execute(text(
            "SELECT key, (envelope->'data'->>'seq')::int, published_at IS NOT NULL, attempts, last_error IS NOT NULL"
            " FROM outbox ORDER BY id"
        ))).all()  # fmt: skip
    # The refused event counts an attempt; the one after it was never tried; both wait, unpublished.
    assert [tuple(row) for row in rows if row[0] == "order-a"] == [
        ("order-a", 0, True, 0, False), ("order-a", 1, False, 1, True), ("order-a", 2, False, 0, False),
    ]  # fmt: skip
    assert all(published for key, _, published, _, _ in rows if key == "order-b")


class _UnreadableEpoch(BrokerEpoch):
    async def read(self) -> str:
        raise KafkaTimeoutError("no answer")


async def test_a_batch_whose_broker_epoch_is_unreadable_publishes_nothing_and_keeps_its_rows(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    await _write_events(sessionmaker, topic, ["order-a"], per_key=2)
    producer = _RefusingProducer(refused=("", -1))
    relay = OutboxRelay(
        service="order", engine=engine, sessionmaker=sessionmaker, producer=producer,
        broker_epoch=_UnreadableEpoch("127.0.0.1:1", producer),
    )  # fmt: skip
    assert await relay.publish_batch() == (0, 1)
    assert producer.sent == []
    assert await _backlog(sessionmaker) == 2


class _CountedEpoch(BrokerEpoch):
    reads = 0

    async def read(self) -> str:
        self.reads += 1
        return await super().read()


async def test_relay_reads_the_broker_epoch_again_only_through_a_new_connection(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, topic: str
) -> None:
    await create_topics(bootstrap, [topic, EPOCH_TOPIC])
    await _write_events(sessionmaker, topic, ["order-a", "order-b"], per_key=6)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    epoch = _CountedEpoch(bootstrap, producer)
    try:
        relay = OutboxRelay(
            service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, broker_epoch=epoch,
            batch_size=2, epoch_check_seconds=3600,
        )  # fmt: skip
        batches = 0
        while await _backlog(sessionmaker):
            await relay.publish_batch()
            batches += 1
        # The first read, and one more if the producer's first connection was opened after it (the epoch's record
        # was already there, not written by this producer): not one per batch.
        assert batches == 6
        assert epoch.reads in (1, 2)
        read_before = epoch.reads
        for connection in producer.client._conns.values():
            connection.close()
        await _write_events(sessionmaker, topic, ["order-a"], per_key=1)
        await relay.publish_batch()
        assert epoch.reads == read_before + 1
    finally:
        await epoch.stop()
        await producer.stop()
    assert _sequences(await read_topic(bootstrap, topic, expected=13)) == {
        "order-a": [0, 1, 2, 3, 4, 5, 0],
        "order-b": list(range(6)),
    }


async def test_relay_keeps_the_backlog_while_the_broker_is_paused_and_publishes_it_after(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    # A broker of its own: pausing the shared one would stall every other test's clients.
    port = free_port()
    broker = TansuBroker(port, TEST_STATE / "logs" / f"tansu-paused-{port}.log")
    broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", request_timeout_ms=1500)
    relay_task = None
    try:
        await create_topics(broker.bootstrap_servers, [topic])
        await producer.start()
        relay = OutboxRelay(
            service="order",
            engine=engine,
            sessionmaker=sessionmaker,
            producer=producer,
            poll_seconds=0.05,
            max_backoff_seconds=1.0,
        )
        relay_task = asyncio.create_task(relay.run())
        keys = ["order-a", "order-b", "order-c", "order-d"]
        await _write_events(sessionmaker, topic, keys, per_key=2)
        await eventually(lambda: _backlog_is(sessionmaker, 0))

        broker.pause()
        await _write_events(sessionmaker, topic, keys, per_key=5)  # seq 0..4 again, as a second batch
        await asyncio.sleep(4)  # several publish attempts time out meanwhile
        assert await _backlog(sessionmaker) == 20
        failed_attempts = await count(sessionmaker, "SELECT coalesce(max(attempts), 0) FROM outbox")
        assert failed_attempts >= 1

        broker.resume()
        await eventually(lambda: _backlog_is(sessionmaker, 0), within=30)
        records = await read_topic(broker.bootstrap_servers, topic, expected=28)
        sequences = _sequences(records)
        for key in keys:
            # Before the pause 0,1; after it 0..4, each at least once and never out of order.
            assert sequences[key][:2] == [0, 1]
            after = sequences[key][2:]
            assert sorted(set(after)) == list(range(5))
            assert after == sorted(after)
    finally:
        if relay_task:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
        broker.resume()
        await producer.stop()
        broker.stop()


async def _backlog_is(sessionmaker: async_sessionmaker[AsyncSession], expected: int) -> bool:
    return await _backlog(sessionmaker) == expected


async def test_only_one_relay_leads_per_service(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    relays = [
        OutboxRelay(service="order", engine=engine, sessionmaker=sessionmaker, producer=producer) for _ in range(2)
    ]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        await eventually(lambda: _any_leader(relays))
        await asyncio.sleep(0.3)
        assert sum(relay.is_leader for relay in relays) == 1
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
    assert await count(sessionmaker, "SELECT count(*) FROM outbox") == 0


async def _any_leader(relays: list[OutboxRelay]) -> bool:
    return any(relay.is_leader for relay in relays)


async def test_relay_republishes_what_a_fresh_broker_never_saw_in_order(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    # A broker of its own, restarted empty on the same address (Tansu's memory storage after a restart).
    port = free_port()
    log_file = TEST_STATE / "logs" / f"tansu-fresh-{port}.log"
    broker = TansuBroker(port, log_file)
    broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", request_timeout_ms=1500)
    relay_task = None
    keys = ["order-a", "order-b", "order-c"]
    try:
        await create_topics(broker.bootstrap_servers, [topic, EPOCH_TOPIC])
        await producer.start()
        relay = OutboxRelay(
            service="order",
            engine=engine,
            sessionmaker=sessionmaker,
            producer=producer,
            broker_epoch=BrokerEpoch(broker.bootstrap_servers, producer, timeout_seconds=2),
            poll_seconds=0.05,
            max_backoff_seconds=0.5,
            epoch_check_seconds=0.2,
        )
        relay_task = asyncio.create_task(relay.run())
        await _write_events(sessionmaker, topic, keys, per_key=3)
        await eventually(lambda: _backlog_is(sessionmaker, 0))
        assert len(await read_topic(broker.bootstrap_servers, topic, expected=9)) == 9

        broker.stop()
        broker = TansuBroker(port, log_file)
        broker.start()
        await create_topics(broker.bootstrap_servers, [topic, EPOCH_TOPIC])

        records = await read_topic(broker.bootstrap_servers, topic, expected=9, within=30)
        assert _sequences(records) == {key: [0, 1, 2] for key in keys}
        assert await count(sessionmaker, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    finally:
        if relay_task:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
        await producer.stop()
        broker.stop()


async def test_relay_deletes_published_events_after_the_retention_window(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, topic: str
) -> None:
    await _write_events(sessionmaker, topic, ["order-old", "order-new"], per_key=1)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET published_at = now() - interval '8 days' WHERE key = 'order-old'"))
        await conn.execute(text("UPDATE outbox SET published_at = now() - interval '6 days' WHERE key = 'order-new'"))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        relay = OutboxRelay(
            service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, retention=timedelta(days=7)
        )
        assert await relay.purge_published() == 1
    finally:
        await producer.stop()
    async with sessionmaker() as session:
        assert (await session.scalars(select(OutboxEvent.key))).all() == ["order-new"]


async def test_an_idle_relay_wakes_when_an_event_is_committed_not_at_its_next_poll(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], bootstrap: str, topic: str
) -> None:
    await create_topics(bootstrap, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    # Polling every 10 minutes: only the outbox trigger's NOTIFY can bring the event out within the wait below.
    relay = OutboxRelay(service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, poll_seconds=600)
    relay_task = asyncio.create_task(relay.run())
    try:
        await _write_events(sessionmaker, topic, ["order-early"], per_key=1)
        await eventually(lambda: _backlog_is(sessionmaker, 0))  # published, and the relay goes idle
        await _write_events(sessionmaker, topic, ["order-late"], per_key=2)
        await eventually(lambda: _backlog_is(sessionmaker, 0))
    finally:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await producer.stop()
    assert _sequences(await read_topic(bootstrap, topic, expected=3)) == {"order-early": [0], "order-late": [0, 1]}


class _SlowAckProducer:
    """Acknowledges each send `ack_seconds` after it (refusing once each of `refuse_once`, a key and sequence
    number), recording what it accepted; its connection stays up (`client._conns`), so the epoch is read once."""

    def __init__(self, *, ack_seconds: float = 0.02, refuse_once: frozenset[tuple[str, int]] = frozenset()) -> None:
        self.ack_seconds = ack_seconds
        self.refuse = set(refuse_once)
        self.accepted: list[tuple[str, int]] = []
        self.client = SimpleNamespace(_conns={"broker": SimpleNamespace(connected=lambda: True)})

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: Any) -> asyncio.Future[Any]:
        sent = (key.decode(), orjson.loads(value)["data"]["seq"])
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def acknowledge() -> None:
            if sent in self.refuse:
                self.refuse.discard(sent)
                delivery.set_exception(KafkaTimeoutError("refused"))
            else:
                self.accepted.append(sent)
                delivery.set_result(None)

        asyncio.get_running_loop().call_later(self.ack_seconds, acknowledge)
        return delivery

    def by_key(self) -> dict[str, list[int]]:
        sequences: dict[str, list[int]] = defaultdict(list)
        for key, seq in self.accepted:
            sequences[key].append(seq)
        return dict(sequences)


async def _claims_open(engine: AsyncEngine) -> int:
    """Transactions of this database that have written and not ended (a relay's batches claimed, not committed);
    looked at without taking a lock the relay's claims would skip."""
    async with engine.connect() as conn:
        return int(await conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL"
            " AND pid <> pg_backend_pid()"
        )))  # fmt: skip


async def _run_relay(relay: OutboxRelay, until: Callable[[], Awaitable[bool]]) -> None:
    task = asyncio.create_task(relay.run())
    try:
        await eventually(until, within=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_through_a_backlog_the_next_batch_is_claimed_while_the_one_before_is_sent(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    keys = ["order-a", "order-b", "order-c"]
    await _write_events(sessionmaker, topic, keys, per_key=10)
    producer = _SlowAckProducer(ack_seconds=0.3)
    relay = OutboxRelay(service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, batch_size=4)
    task = asyncio.create_task(relay.run())
    try:
        # While the first batch's acknowledgements are awaited, the second batch is claimed too.
        await eventually(lambda: _claims_open_are(engine, 2))
        await eventually(lambda: _backlog_is(sessionmaker, 0), within=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert producer.by_key() == {key: list(range(10)) for key in keys}


async def _claims_open_are(engine: AsyncEngine, expected: int) -> bool:
    return await _claims_open(engine) == expected


async def test_a_failure_gives_up_the_batch_claimed_ahead_and_nothing_is_sent_out_of_order(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    keys = ["order-a", "order-b"]
    await _write_events(sessionmaker, topic, keys, per_key=8)
    # The first batch is a0 b0 a1 b1 a2 b2: a1 is refused once, and the batch claimed ahead (a3 b3 a4 b4 a5 b5) must
    # not go before a1 does.
    producer = _SlowAckProducer(refuse_once=frozenset({("order-a", 1)}))
    relay = OutboxRelay(
        service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, batch_size=6,
        max_backoff_seconds=0.1,
    )  # fmt: skip
    await _run_relay(relay, lambda: _backlog_is(sessionmaker, 0))
    assert producer.by_key() == {key: list(range(8)) for key in keys}


class _ChangedEpoch(BrokerEpoch):
    """A broker whose epoch is not the one recorded: a fresh broker, answering a little after being asked."""

    async def read(self) -> str:
        await asyncio.sleep(0.2)
        return "epoch-fresh"


async def test_after_a_fresh_broker_the_batch_claimed_ahead_waits_for_every_retained_event(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    await _write_events(sessionmaker, topic, ["order-a"], per_key=12)
    async with engine.begin() as conn:  # seq 0..5 were published to the broker before, which is now a fresh one
        await conn.execute(text(
            "UPDATE outbox SET published_at = now() WHERE (envelope->'data'->>'seq')::int < 6"
        ))  # fmt: skip
        await conn.execute(text("INSERT INTO outbox_relay (relay, broker_epoch) VALUES ('order', 'epoch-gone')"))
    producer = _SlowAckProducer()
    relay = OutboxRelay(
        service="order", engine=engine, sessionmaker=sessionmaker, producer=producer, batch_size=3,
        broker_epoch=_ChangedEpoch("127.0.0.1:1", cast(AIOKafkaProducer, producer)), epoch_check_seconds=3600,
    )  # fmt: skip
    # The first batch claims 6 7 8 and one is claimed ahead (9 10 11); the epoch puts 0..5 back first.
    await _run_relay(relay, lambda: _backlog_is(sessionmaker, 0))
    assert producer.by_key() == {"order-a": list(range(12))}


async def test_a_relay_stopped_while_a_batch_is_being_claimed_leaves_no_batch_running(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> None:
    relay = OutboxRelay(service="order", engine=engine, sessionmaker=sessionmaker, producer=_SlowAckProducer())
    claiming, stopped = asyncio.Event(), asyncio.Event()

    async def claim_without_end(batch: Any) -> None:  # a claim that takes as long as it takes
        claiming.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    relay._publish = claim_without_end  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(claiming.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert stopped.is_set()  # the batch in hand was stopped with the relay, not left to send on its own
