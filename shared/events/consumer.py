"""The event consumer: at-least-once delivery turned into exactly-once effects, in order per subject.

For each record: take its subject's lock, claim the event (its inbox row), run the handler (which may write outbox
rows) and commit, all in one transaction; the Kafka offsets of what was handled are committed after it, every
`offset_commit_seconds`. A duplicate or a redelivery after a crash or a rebalance hits the inbox key and does
nothing. A record whose `type` header (set by the relay) names a type the service has no handler for is skipped
before its value is even decoded; an event its handler is not concerned with (`handles(..., concerns=..., asks=...)`,
shared/events/contracts.py) is skipped after decoding, before any transaction.

Failures are of two kinds (shared/events/failures.py). An unreachable database or broker, a serialization failure
or a deadlock is retried without limit, backing off: the partition waits and nothing is dead-lettered. A handler
that keeps failing (a bug, a poison event) dead-letters its event after `max_attempts`: the event is parked, held,
in `parked_event` and copied to `<topic>.dlq` with the error in its headers; every later event of its subject is
parked behind it, and the partition moves on. An event whose data does not fit the handler's view
(`EventContractError`) is dead-lettered at its first failure: retrying the same bytes cannot help. Once an operator
replays the dead letter (`songda dlq replay`, or the topic's records sent back by `songda dlq replay-topic`) or
discards it, the subject's parked events are applied in order (shared/events/parking.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import context, metrics
from shared.db import pooled_driver
from shared.events.contracts import EventContractError, EventHandler, Handles
from shared.events.envelope import Envelope
from shared.events.failures import SchemaBehind, is_infrastructure_failure
from shared.events.kafka_security import PLAINTEXT, KafkaSecurity
from shared.events.models import InboxEvent, ParkedEvent
from shared.events.parking import released_subjects, subject_lock_key
from shared.events.topics import dlq_topic
from shared.tracing import TRACEPARENT, consuming, tracing_on

log = logging.getLogger(__name__)

__all__ = ["EventConsumer", "EventHandler"]

T = TypeVar("T")

DLQ_HEADER_PREFIX = "songda-"
REPLAYED_HEADER = "songda-replayed-from"
TYPE_HEADER = "type"  # the event's type, set by the relay (shared/events/relay.py) from the outbox row

# Under the subject's lock (which serialises the applying, parking and releasing of one subject's events,
# shared/events/parking.py), in a snapshot taken after it: claims the event (its inbox row, unless events of its
# subject are parked, which it must then wait behind; nothing if it was handled), and reads what was there before the
# claim: whether it had been handled, whether its subject has parked events, and its own parked row if it is one of
# them. One call of the function each service's `*_claim_function` migration creates (shared/migrations.py).
_CLAIM = text(
    "SELECT claimed, handled, parked, mine, mine_held FROM songda_claim_event("
    ":consumer, :key, :subject, :event_id, :type, :topic, :partition, :offset)"
)


UNDEFINED_FUNCTION = "42883"
# How long a stopping consumer tries to commit the offsets it handled since its last commit.
COMMIT_AT_STOP_SECONDS = 5.0


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
        max_backoff_seconds: float = 10.0,
        session_timeout_ms: int = 6_000,
        consumer_timeout_ms: int = 200,
        group_id: str | None = None,
        released_check_seconds: float = 0.0,
        offset_commit_seconds: float = 0.0,
        security: KafkaSecurity = PLAINTEXT,
        stopping: asyncio.Event | None = None,
    ) -> None:
        """`released_check_seconds`: how often the parked events an operator released are looked for (0: before
        every fetch); each look is a database round trip, so an idle consumer checks every few seconds.
        `offset_commit_seconds`: how often `run` commits the offsets handled (0: after every fetch).
        `stopping`: once set, the consumer finishes the record in hand, commits what it handled and returns."""
        self.stopping = stopping or asyncio.Event()
        self.service = service
        self.group_id = group_id or service
        self.sessionmaker = sessionmaker
        self.topics = topics
        self.handlers = handlers
        self.dlq_producer = dlq_producer
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.max_backoff = max_backoff_seconds
        self.released_check_seconds = released_check_seconds
        self.released_checked_at: float | None = None
        self.offset_commit_seconds = offset_commit_seconds
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap_servers,
            group_id=self.group_id,
            client_id=f"songda-{service}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group, or a fresh broker: from the first record
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 3, 500),
            consumer_timeout_ms=consumer_timeout_ms,
            **security.client_kwargs(),
        )

    @property
    def engine(self) -> AsyncEngine:
        """Where one-statement questions (before an event, for released parked events) run without a session."""
        engine: AsyncEngine = self.sessionmaker.kw["bind"]
        return engine

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run(self) -> None:
        """Consumes until `stopping` is set (or cancelled). Offsets are committed every `offset_commit_seconds`, not
        after every fetch (each commit is a round trip to the broker): a record read again after a crash or a
        rebalance is a duplicate its inbox drops, or a type passed over on its header. A shutdown lets the handler in
        hand finish and commits the offsets of every record handled, so nothing is half-applied and nothing handled
        is read again."""
        await self.start()
        loop = asyncio.get_running_loop()
        handled: dict[TopicPartition, int] = {}
        committed_at = loop.time()
        try:
            while not self.stopping.is_set():
                handled |= await self.poll_and_handle()
                if handled and loop.time() - committed_at >= self.offset_commit_seconds:
                    await self.commit(handled)
                    handled, committed_at = {}, loop.time()
        finally:
            try:  # stopping, or cancelled (past the shutdown's grace) or failing: what was handled is not read again
                await asyncio.wait_for(self.commit(handled), COMMIT_AT_STOP_SECONDS)
            except Exception as exc:
                log.warning("offsets not committed at stop", extra={"error": repr(exc)})
            finally:
                await self.stop()

    async def poll_and_handle(self, timeout_ms: int = 500) -> dict[TopicPartition, int]:
        """Applies the released parked events, then handles one fetched batch (each record committed to the
        database) and returns the offsets to commit."""
        now = asyncio.get_running_loop().time()
        if self.released_checked_at is None or now - self.released_checked_at >= self.released_check_seconds:
            await self.apply_released()
            self.released_checked_at = now
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for record in records:
                if self.stopping.is_set():  # the rest of the batch is read again by whoever consumes next
                    return offsets
                await self.handle_record(record)
                offsets[tp] = record.offset + 1
            highwater = self.consumer.highwater(tp)
            if highwater is not None and tp in offsets:
                metrics.consumer_lag(self.service, tp.topic, tp.partition).set(max(highwater - offsets[tp], 0))
        return offsets

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commits the offsets of the partitions this member still holds (a partition moved to another member by a
        rebalance is read again there, and its inbox drops what was handled here)."""
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member: it will see these records again and the inbox drops them.
            log.warning("offset commit refused after a rebalance", extra={"error": repr(exc)})

    async def handle_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        headers = dict(record.headers or ())
        named = headers.get(TYPE_HEADER)
        if named is not None and named.decode(errors="replace") not in self.handlers:
            # Most records of a topic are of types a consumer has no handler for: passed over on their header alone,
            # their value not even decoded (an undecodable one too: it is nothing to this consumer).
            metrics.consumed(self.service, record.topic, "ignored").inc()
            return
        try:
            event = Envelope.from_bytes(record.value or b"")
        except ValidationError as exc:  # no subject to park it under: the DLQ topic only
            error = f"undecodable envelope: {exc.errors()[:3]}"
            await self._until_reachable(record.topic, lambda: self._publish_dead_letter(record, error))
            return
        handler = await self._until_reachable(record.topic, lambda: self._handler_now(event))
        if handler is None:
            metrics.consumed(self.service, record.topic, "ignored").inc()
            return
        replayed = REPLAYED_HEADER in headers
        traceparent = headers[TRACEPARENT].decode("latin-1") if TRACEPARENT in headers else event.traceparent
        with self._span(record.topic, event, traceparent):
            for attempt in range(1, self.max_attempts + 1):
                try:
                    outcome = await self._until_reachable(
                        record.topic, lambda: self._apply(record, event, handler, replayed)
                    )
                except Exception as exc:  # the handler's failure: retried, then dead-lettered
                    self._log_handler_failure(event, attempt, exc)
                    if attempt == self.max_attempts or isinstance(exc, EventContractError):
                        await self._dead_letter(record, event, repr(exc))
                        return
                    await asyncio.sleep(self.retry_seconds * 2 ** (attempt - 1))
                    continue
                metrics.consumed(self.service, record.topic, outcome).inc()
                return

    def _span(self, topic: str, event: Envelope, traceparent: str | None) -> AbstractContextManager[None]:
        """The consumer span of the event's handling, in the trace it was published in (none when tracing is off)."""
        if not tracing_on():
            return nullcontext()
        attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": self.group_id,
            "messaging.message.id": str(event.id),
            "songda.event.type": event.type,
            "songda.correlation_id": event.correlation_id or "",
        }
        return consuming(traceparent, f"{event.type} process", attributes)

    def handler_for(self, event: Envelope) -> EventHandler | None:
        """The handler of the event, or None if this consumer has none for its type or its handler is not concerned
        with it."""
        handler = self.handlers.get(event.type)
        if isinstance(handler, Handles) and not handler.concerned(event):
            return None
        return handler

    async def _handler_now(self, event: Envelope) -> EventHandler | None:
        """`handler_for`, and then what the handler asks the database of the event (`handles(..., asks=...)`),
        outside any transaction."""
        handler = self.handler_for(event)
        if not isinstance(handler, Handles) or handler.asks is None:
            return handler
        try:
            async with pooled_driver(self.engine) as connection:
                concerned = await handler.concerned_now(connection, event)
        except Exception as exc:
            if is_infrastructure_failure(exc):
                raise
            return handler  # a question that fails is no answer: the handler runs, and fails, retried as any handler
        return handler if concerned else None

    async def apply_released(self) -> None:
        """Applies, oldest first, the parked events of every subject no dead letter holds any more."""

        async def look() -> list[str]:
            async with pooled_driver(self.engine) as connection:
                return await released_subjects(connection, self.group_id)

        for subject in await self._until_reachable("parked", look):
            await self._apply_parked(subject)

    async def _apply_parked(self, subject: str) -> None:
        attempt = 0
        while True:
            try:
                applied = await self._until_reachable("parked", lambda: self._apply_parked_head(subject))
            except Exception as exc:  # the handler failed on the head again
                attempt += 1
                head = await self._until_reachable("parked", lambda: self._parked_head(subject))
                if head is None:
                    return
                self._log_handler_failure(Envelope.from_bytes(head.value), attempt, exc)
                if attempt >= self.max_attempts or isinstance(exc, EventContractError):
                    await self._dead_letter_parked(head, repr(exc))
                    return
                await asyncio.sleep(self.retry_seconds * 2 ** (attempt - 1))
                continue
            if not applied:
                return
            attempt = 0

    async def _dead_letter_parked(self, head: ParkedEvent, error: str) -> None:
        """Holds the subject again behind its head, and copies the head to the DLQ topic."""

        async def hold() -> None:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    update(ParkedEvent).where(ParkedEvent.id == head.id).values(held=True, error=error[:2000])
                )

        await self._until_reachable(head.topic, hold)
        await self._until_reachable(
            head.topic,
            lambda: self._send_dead_letter(
                head.topic, head.partition, head.offset, head.subject.encode(), head.value, [], error
            ),
        )

    async def _apply(
        self, record: ConsumerRecord[bytes, bytes], event: Envelope, handler: EventHandler, replayed: bool
    ) -> str:
        """Applies, parks or drops the event; returns the outcome. An event handled is three round trips of the
        consumer's own (BEGIN, the lock and claim, COMMIT) around its handler's statements."""
        async with self.sessionmaker() as session, session.begin():
            # Through the session, so that it begins the transaction the claim and the handler run in.
            values = {"consumer": self.group_id, "key": subject_lock_key(self.group_id, event.subject),
                      "subject": event.subject, "event_id": event.id, "type": event.type, "topic": record.topic,
                      "partition": record.partition, "offset": record.offset}  # fmt: skip
            try:
                claim = (await session.execute(_CLAIM, values)).one()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == UNDEFINED_FUNCTION:
                    raise SchemaBehind("songda_claim_event is missing: the service's migrations have not run") from exc
                raise
            if claim.claimed:
                await self._run_handler(session, event, handler)
                return "handled"
            if claim.handled or not claim.parked:  # handled (since the snapshot, if only the claim saw it)
                return "duplicate"
            if claim.mine is None:  # its subject waits behind a dead letter: so does it
                await session.execute(insert(ParkedEvent).values(**self._parked_values(record, event)))
                return "parked"
            if claim.mine_held and replayed:  # the dead letter came back from the DLQ topic: release it
                await session.execute(update(ParkedEvent).where(ParkedEvent.id == claim.mine).values(held=False))
                return "released"
            return "duplicate"

    async def _apply_parked_head(self, subject: str) -> bool:
        """Applies the oldest parked event of `subject` unless it is held; returns whether one was applied."""
        async with self.sessionmaker() as session, session.begin():
            locked = await session.scalar(
                select(func.pg_try_advisory_xact_lock(subject_lock_key(self.group_id, subject)))
            )
            if not locked:  # another member of the group is at it
                return False
            head = await session.scalar(
                select(ParkedEvent)
                .where(ParkedEvent.consumer == self.group_id, ParkedEvent.subject == subject)
                .order_by(ParkedEvent.id)
                .limit(1)
            )
            if head is None or head.held:
                return False
            event = Envelope.from_bytes(head.value)
            with self._span(head.topic, event, event.traceparent):
                await self._apply_head(session, head, event)
            await session.delete(head)
        metrics.consumed(self.service, head.topic, "unparked").inc()
        return True

    async def _apply_head(self, session: AsyncSession, head: ParkedEvent, event: Envelope) -> None:
        inserted = await session.scalar(
            insert(InboxEvent)
            .values(
                consumer=self.group_id,
                event_id=head.event_id,
                type=head.type,
                topic=head.topic,
                partition=head.partition,
                offset=head.offset,
            )
            .on_conflict_do_nothing()
            .returning(InboxEvent.event_id)
        )
        handler = self.handler_for(event)
        if inserted is not None and handler is not None:
            await self._run_handler(session, event, handler)

    async def _parked_head(self, subject: str) -> ParkedEvent | None:
        async with self.sessionmaker() as session:
            return await session.scalar(
                select(ParkedEvent)
                .where(ParkedEvent.consumer == self.group_id, ParkedEvent.subject == subject)
                .order_by(ParkedEvent.id)
                .limit(1)
            )

    async def _run_handler(self, session: AsyncSession, event: Envelope, handler: EventHandler) -> None:
        cid = context.correlation_id.set(event.correlation_id or str(event.id))
        cause = context.causation_id.set(str(event.id))
        try:
            await handler(session, event)
        finally:
            context.causation_id.reset(cause)
            context.correlation_id.reset(cid)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], event: Envelope, error: str) -> None:
        """Parks the event, held, so its subject waits for an operator; then copies it to the DLQ topic."""

        async def park() -> None:
            async with self.sessionmaker() as session, session.begin():
                values = self._parked_values(record, event) | {"held": True, "error": error[:2000]}
                await session.execute(
                    insert(ParkedEvent)
                    .values(**values)
                    .on_conflict_do_update(
                        constraint="uq_parked_event_consumer", set_={"held": True, "error": error[:2000]}
                    )
                )

        await self._until_reachable(record.topic, park)
        await self._until_reachable(record.topic, lambda: self._publish_dead_letter(record, error))

    async def _publish_dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        await self._send_dead_letter(
            record.topic, record.partition, record.offset, record.key, record.value, list(record.headers or ()), error
        )

    async def _send_dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        error: str,
    ) -> None:
        headers = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
        headers += [
            ("songda-error", error[:2000].encode()),
            ("songda-original-topic", topic.encode()),
            ("songda-original-partition", str(partition).encode()),
            ("songda-original-offset", str(offset).encode()),
            ("songda-consumer", self.group_id.encode()),
            ("songda-dead-letter-id", uuid.uuid4().hex.encode()),
        ]
        await self.dlq_producer.send_and_wait(dlq_topic(topic), value=value, key=key, headers=headers)
        metrics.DLQ_RECORDS.labels(self.service, topic).inc()
        metrics.consumed(self.service, topic, "dead_lettered").inc()
        log.error("record dead-lettered", extra={"topic": topic, "offset": offset, "error": error})

    async def _until_reachable(self, topic: str, work: Callable[[], Awaitable[T]]) -> T:
        """Runs `work`, retrying infrastructure failures without limit (backing off); other failures propagate."""
        delay = self.retry_seconds
        while True:
            try:
                return await work()
            except Exception as exc:
                if not is_infrastructure_failure(exc):
                    raise
                metrics.CONSUMER_INFRA_RETRIES.labels(self.service, topic).inc()
                log.warning("database or broker unreachable; retrying", extra={"error": repr(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, 0.05), self.max_backoff)

    def _parked_values(self, record: ConsumerRecord[bytes, bytes], event: Envelope) -> dict[str, object]:
        return {
            "consumer": self.group_id,
            "event_id": event.id,
            "type": event.type,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "subject": event.subject,
            "value": record.value or b"",
        }

    def _log_handler_failure(self, event: Envelope, attempt: int, exc: BaseException) -> None:
        log.warning(
            "event handler failed",
            extra={"event_id": str(event.id), "type": event.type, "attempt": attempt, "error": repr(exc)},
        )
