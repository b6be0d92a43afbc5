"""The event consumer: at-least-once delivery turned into exactly-once effects.

For each record: insert the inbox row, run the handler (which may write outbox rows) and commit, all in one
transaction; only then commit the Kafka offset. A duplicate or a redelivery after a crash hits the inbox key and
does nothing. A record that keeps failing goes to `<topic>.dlq` after `max_attempts`, with the error in its
headers, and the partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import context, metrics
from shared.events.envelope import Envelope
from shared.events.models import InboxEvent
from shared.events.topics import dlq_topic

log = logging.getLogger(__name__)

EventHandler = Callable[[AsyncSession, Envelope], Awaitable[None]]

DLQ_HEADER_PREFIX = "songda-"


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        bootstrap_servers: str,
        topics: list[str],
        handlers: Mapping[str, EventHandler],
        dlq_producer: AIOKafkaProducer,
        max_attempts: int = 5,
        retry_seconds: float = 0.2,
        session_timeout_ms: int = 6_000,
        group_id: str | None = None,
    ) -> None:
        self.service = service
        self.group_id = group_id or service
        self.sessionmaker = sessionmaker
        self.topics = topics
        self.handlers = handlers
        self.dlq_producer = dlq_producer
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap_servers,
            group_id=self.group_id,
            client_id=f"songda-{service}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 3, 500),
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run(self) -> None:
        """Consumes until cancelled."""
        await self.start()
        try:
            while True:
                offsets = await self.poll_and_handle()
                await self.commit(offsets)
        finally:
            await self.stop()

    async def poll_and_handle(self, timeout_ms: int = 500) -> dict[TopicPartition, int]:
        """Handles one fetched batch (each record committed to the database) and returns the offsets to commit."""
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for record in records:
                await self.handle_record(record)
                offsets[tp] = record.offset + 1
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
                    max(highwater - offsets[tp], 0)
                )
        return offsets

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member: it will see these records again and the inbox drops them.
            log.warning("offset commit refused after a rebalance", extra={"error": repr(exc)})

    async def handle_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = Envelope.from_bytes(record.value or b"")
        except ValidationError as exc:
            await self.dead_letter(record, f"undecodable envelope: {exc.errors()[:3]}")
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            metrics.CONSUMER_HANDLED.labels(self.service, record.topic, "ignored").inc()
            return
        last_error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                duplicate = await self._apply(record, event, handler)
            except Exception as exc:  # the handler's failure: retried, then dead-lettered
                last_error = exc
                log.warning(
                    "event handler failed",
                    extra={
                        "event_id": str(event.id),
                        "type": event.type,
                        "attempt": attempt,
                        "error": repr(exc),
                    },
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_seconds * 2 ** (attempt - 1))
                continue
            outcome = "duplicate" if duplicate else "handled"
            metrics.CONSUMER_HANDLED.labels(self.service, record.topic, outcome).inc()
            return
        await self.dead_letter(record, repr(last_error))

    async def _apply(self, record: ConsumerRecord[bytes, bytes], event: Envelope, handler: EventHandler) -> bool:
        """Returns True when the event had been handled already."""
        cid = context.correlation_id.set(event.correlation_id or str(event.id))
        cause = context.causation_id.set(str(event.id))
        try:
            async with self.sessionmaker() as session, session.begin():
                inserted = await session.scalar(
                    insert(InboxEvent)
                    .values(
                        consumer=self.group_id,
                        event_id=event.id,
                        type=event.type,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                    .on_conflict_do_nothing()
                    .returning(InboxEvent.event_id)
                )
                if inserted is None:
                    return True
                await handler(session, event)
                return False
        finally:
            context.causation_id.reset(cause)
            context.correlation_id.reset(cid)

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)]
        headers += [
            ("songda-error", error[:2000].encode()),
            ("songda-original-topic", record.topic.encode()),
            ("songda-original-partition", str(record.partition).encode()),
            ("songda-original-offset", str(record.offset).encode()),
            ("songda-consumer", self.group_id.encode()),
            ("songda-dead-letter-id", uuid.uuid4().hex.encode()),
        ]
        await self.dlq_producer.send_and_wait(
            dlq_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        metrics.DLQ_RECORDS.labels(self.service, record.topic).inc()
        metrics.CONSUMER_HANDLED.labels(self.service, record.topic, "dead_lettered").inc()
        log.error("record dead-lettered", extra={"topic": record.topic, "offset": record.offset, "error": error})
