"""The outbox relay: publishes committed outbox rows to Kafka, at least once, in order per key.

One relay per service is active at a time (a PostgreSQL advisory lock elects it); rows are claimed with
`FOR UPDATE SKIP LOCKED` all the same, so even two leaders could not publish one row concurrently. A batch is one
transaction: one UPDATE that claims the oldest rows and marks them published (returning the envelopes as the bytes to
send), the sends, and, only when some failed, one UPDATE putting those back in the backlog; a crash before the commit
leaves them all unpublished. Within a batch, rows are grouped by (topic, key) and sent in waves (see `_send`): a later
event of an order is never sent before an earlier one is acknowledged, and a chain stops at its first failure.
Through a backlog, the next batch is claimed (in a transaction of its own, skipping the rows locked by the batch in
flight) while the one before is being sent, and sent only once that one has committed with every send
acknowledged; after a failure, a fresh broker's requeue (the retained rows go first) or when the broker's epoch is to
be read, it is rolled back unsent. The claim and the sends, each about half of a batch's time, overlap.
Failures keep the row (and everything after it for that key) in the backlog, and the relay backs off while the broker
is away.

Published rows are kept for `retention` (then deleted): when the broker turns out to be a fresh one that never saw
them (shared/events/epoch.py), they go back into the backlog and are published again, oldest first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from shared import metrics
from shared.db import OUTBOX_CHANNEL, notifications, pooled_driver, wait_for_ring
from shared.events.epoch import BrokerEpoch
from shared.events.models import OutboxEvent
from shared.tracing import TRACEPARENT

log = logging.getLogger(__name__)


def advisory_lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class OutboxRelay:
    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        broker_epoch: BrokerEpoch | None = None,
        batch_size: int = 1000,
        poll_seconds: float = 5.0,
        max_backoff_seconds: float = 10.0,
        retention: timedelta = timedelta(days=7),
        epoch_check_seconds: float = 5.0,
    ) -> None:
        """Without `broker_epoch` the relay trusts the broker to keep what it was sent (a test's own broker)."""
        self.service = service
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.producer = producer
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff_seconds
        self.broker_epoch = broker_epoch
        self.retention = retention
        self.epoch_check_seconds = epoch_check_seconds
        self.epoch_checked_at: float | None = None
        self.lock_key = advisory_lock_key(f"songda-outbox-relay:{service}")
        self.is_leader = False

    async def run(self) -> None:
        """Runs until cancelled: waits for leadership, then publishes while it holds it."""
        while True:
            async with self.engine.connect() as lock_conn:
                acquired = await lock_conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_key})
                await lock_conn.commit()
                if not acquired:
                    await asyncio.sleep(max(self.poll_seconds, 1.0))
                    continue
                self.is_leader = True
                self.epoch_checked_at = None  # a new leader checks the broker before its first batch
                try:
                    async with notifications(lock_conn, OUTBOX_CHANNEL) as rung:
                        await self._lead(lock_conn, rung)
                finally:
                    self.is_leader = False
                    if self.broker_epoch:
                        await self.broker_epoch.stop()

    async def _lead(self, lock_conn: AsyncConnection, rung: asyncio.Event) -> None:
        """Publishes while there is a backlog, each full batch's successor claimed while it is sent; idle, sleeps until
        a new outbox row is committed (NOTIFY) or `poll_seconds` passed (a safety net, and the pace of the broker
        epoch checks)."""
        delay = 0.0  # the backoff while publishing fails
        last_check = asyncio.get_running_loop().time()
        last_purge: float | None = None
        batch: _Batch | None = None
        ahead: _Batch | None = None  # the next batch, claimed while the one in hand is sent
        try:
            while True:
                now = asyncio.get_running_loop().time()
                if last_purge is None or now - last_purge > 60:
                    await self.purge_published()
                    last_purge = now
                batch, ahead = ahead or _Batch(self, after=None), None
                if await batch.full() and not batch.given_up() and not self._epoch_wanted(now):
                    ahead = _Batch(self, after=batch)
                outcome = await batch.task
                if outcome is None:  # claimed ahead and given up unsent, as is the batch claimed after it
                    continue  # the backlog is claimed afresh at once
                published, failed = outcome
                if failed:
                    delay = min(max(delay * 2, 0.5), self.max_backoff)
                    await asyncio.sleep(delay)
                elif published < self.batch_size:
                    # The backlog the batch's snapshot saw is published: a row committed since has rung (its NOTIFY
                    # comes after its commit), so the wait returns at once for it. Looking again without waiting had
                    # been an empty round (a transaction and a claim) after nearly every event.
                    delay = 0.0
                    await wait_for_ring(rung, min(self.poll_seconds, self.epoch_check_seconds))
                now = asyncio.get_running_loop().time()
                if now - last_check > 5:
                    # The lock lives as long as its connection: make sure it still does.
                    await lock_conn.scalar(text("SELECT 1"))
                    await lock_conn.commit()
                    last_check = now
        finally:  # stopped or failing: a batch still on its way rolls back, unsent
            unfinished = [b.task for b in (batch, ahead) if b is not None and not b.task.done()]
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def purge_published(self) -> int:
        """Deletes the rows published longer ago than the retention window."""
        cutoff = datetime.now(UTC) - self.retention
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(delete(OutboxEvent).where(OutboxEvent.published_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    async def publish_batch(self) -> tuple[int, int]:
        """Publishes one batch of the backlog; returns (published, failed) counts."""
        batch = _Batch(self, after=None)
        outcome = await batch.task
        assert outcome is not None  # only a batch claimed ahead is given up
        return outcome

    async def _publish(self, batch: _Batch) -> tuple[int, int] | None:
        """Claims a batch, sends it and commits; returns (published, failed) counts.

        Every `epoch_check_seconds`, and before a batch sent through a connection the producer opened since (a
        broker that restarted is reached through a new one), the relay asks the broker for its epoch, in the batch's
        transaction: on a fresh broker the retained rows rejoin the backlog, ahead of the newer ones.

        A batch claimed ahead (while the one before it is being sent) is sent once that one is `cleared`; it is given up
        (rolled back, None) when that one had a failure or put retained rows back in the backlog (which go first), or
        when the broker's epoch is to be read (the next batch, claimed afresh, reads it)."""
        # On the pool connection's asyncpg driver, in a transaction of its own: a batch's rows are read as the
        # driver's records, not built into SQLAlchemy rows (most of the relay's CPU through a backlog).
        rows: list[asyncpg.Record] = []
        requeued = False
        try:
            async with pooled_driver(self.engine) as driver:
                try:
                    async with driver.transaction():
                        try:
                            rows = await driver.fetch(_CLAIM, self.batch_size)
                        finally:
                            batch.claimed.set_result(len(rows))
                        if batch.waits_for is not None and not await batch.waits_for:
                            raise _GivenUp
                        now = asyncio.get_running_loop().time()
                        if self._epoch_wanted(now, bool(rows)):
                            if batch.waits_for is not None:
                                raise _GivenUp
                            assert self.broker_epoch is not None  # wanted only with one
                            try:
                                epoch = await self.broker_epoch.read()
                            except (KafkaError, TimeoutError, OSError) as exc:
                                # Raised, not returned: the claim must roll back, or its rows would stay marked
                                # published though never sent.
                                raise _EpochUnreadable from exc
                            self.epoch_checked_at = now
                            self._note_connections()
                            if await self._follow_epoch(driver, epoch, claimed=len(rows)):
                                requeued = True
                                rows = await driver.fetch(_CLAIM, self.batch_size)
                        if not rows:
                            return 0, 0
                        published_ids, failures = await self._send(rows)
                        if failures:
                            self.epoch_checked_at = None  # the broker may be another one when it answers again
                            # The failed rows, and the rest of their chains (never sent), go back in the backlog.
                            errors = {row_id: repr(error)[:1000] for row_id, error in failures}
                            sent = set(published_ids)
                            unsent = [row["id"] for row in rows if row["id"] not in sent]
                            await driver.execute(_UNCLAIM, unsent, [errors.get(row_id) for row_id in unsent])
                # Rolled back by the transaction's block, the connection fit for the pool as it is.
                except _GivenUp:
                    return None
                except _EpochUnreadable as unreadable:
                    log.warning("broker epoch unreadable; backlog kept", extra={"error": repr(unreadable.__cause__)})
                    return 0, 1
            # Cleared once committed, not at its last acknowledgement: had the commit failed, its rows would be sent
            # again after the next batch's (duplicates only, but out of order).
            batch.cleared.set_result(not failures and not requeued)
        finally:
            if not batch.cleared.done():  # nothing sent and committed: a batch claimed after this one waits no more
                batch.cleared.set_result(False)
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(published_ids))
        if failures:
            metrics.OUTBOX_PUBLISH_FAILURES.labels(self.service).inc(len(failures))
            log.warning(
                "outbox publish failed; backlog kept",
                extra={
                    "failed_keys": len(failures),
                    "published": len(published_ids),
                    "error": repr(failures[0][1]),
                },
            )
        return len(published_ids), len(failures)

    def _epoch_wanted(self, now: float, rows: bool = True) -> bool:
        """Whether the broker's epoch is to be read before a batch (with `rows`) is sent: every
        `epoch_check_seconds`, and through a connection the producer opened since it was last read."""
        if self.broker_epoch is None:
            return False
        due = self.epoch_checked_at is None or now - self.epoch_checked_at > self.epoch_check_seconds
        return due or (rows and not self._same_broker())

    def _same_broker(self) -> bool:
        """Whether the producer still speaks through the connections it had when the epoch was last read: a broker
        that restarted, a fresh one included, is only reached through a new connection, so while none appeared the
        epoch cannot have changed and is not read again before each batch (two ListOffsets and a fetch)."""
        connections = self.producer.client._conns.values()  # aiokafka's own (pinned): no public view of them
        return bool(connections) and all(getattr(c, _EPOCH_READ, False) and c.connected() for c in connections)

    def _note_connections(self) -> None:
        for connection in self.producer.client._conns.values():
            setattr(connection, _EPOCH_READ, True)

    async def _follow_epoch(self, driver: asyncpg.Connection, epoch: str, claimed: int) -> bool:
        """Records the broker's epoch; when it changed, puts the retained rows back in the backlog (True). `claimed`:
        the rows this batch's claim has just marked, which go back too but were never published."""
        known = await driver.fetchval(_KNOWN_EPOCH, self.service)
        if known == epoch:
            return False
        await driver.execute(_RECORD_EPOCH, self.service, epoch)
        if known is None:
            return False  # the first broker this relay meets: everything it published went there
        requeued = int((await driver.execute(_REQUEUE)).split()[-1]) - claimed
        metrics.OUTBOX_REPUBLISHED.labels(self.service).inc(requeued)
        log.warning("fresh broker: republishing retained events", extra={"epoch": epoch, "requeued": requeued})
        return True

    async def _send(self, rows: list[asyncpg.Record]) -> tuple[list[int], list[tuple[int, Exception]]]:
        """Sends the rows in waves: the n-th row of every (topic, key) chain in wave n, all of a wave at once (the
        producer batches them), each wave awaited before the next. A chain stops at its first failure, so no event
        of an order is sent before an earlier one of the same order has been acknowledged."""
        chains: dict[tuple[str, str], list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            chains[(row["topic"], row["key"])].append(row)
        pending = [iter(chain) for chain in chains.values()]
        published: list[int] = []
        failures: list[tuple[int, Exception]] = []
        while pending:
            wave = [(chain, head) for chain in pending if (head := next(chain, None)) is not None]
            # One send at a time into the producer's buffer (it waits only when a partition's buffer is full), then
            # the whole wave's acknowledgements together.
            deliveries = [await self._send_row(row) for _, row in wave]
            pending = []
            for (chain, row), delivery in zip(wave, deliveries, strict=True):
                try:
                    await delivery
                except Exception as exc:  # this row and the rest of its chain stay in the backlog
                    failures.append((row["id"], exc))
                    continue
                published.append(row["id"])
                pending.append(chain)
        return published, failures

    async def _send_row(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        headers = [("type", row["type"].encode()), ("event_id", str(row["event_id"]).encode())]
        if row["traceparent"]:  # the trace the event was written in, for consumers that read headers only
            headers.append((TRACEPARENT, row["traceparent"].encode()))
        try:
            delivery: asyncio.Future[Any] = await self.producer.send(
                row["topic"], value=row["value"], key=row["key"].encode(), headers=headers
            )
        except Exception as exc:  # refused before it was buffered: this row's chain stops here
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return delivery


class _Batch:
    """A batch of the backlog on its way: `claimed` is told how many rows its claim took, `cleared` whether the batch
    claimed after it may be sent (all its sends were acknowledged, and no retained rows rejoined the backlog ahead of
    that one's). A batch claimed ahead, while the batch before it (`after`) is being sent, waits for that one's
    `cleared` (`waits_for`): no event is sent before an earlier one of its order is acknowledged, nor after a
    failure."""

    def __init__(self, relay: OutboxRelay, *, after: _Batch | None) -> None:
        loop = asyncio.get_running_loop()
        # What it waits for when claimed ahead: the batch before it cleared (that batch's future, not the batch, so
        # that batches claimed one after another through a backlog are not kept as a chain).
        self.waits_for = after.cleared if after is not None else None
        self.size = relay.batch_size
        self.claimed: asyncio.Future[int] = loop.create_future()
        self.cleared: asyncio.Future[bool] = loop.create_future()
        self.task = asyncio.create_task(relay._publish(self))

    def given_up(self) -> bool:
        """Whether it was claimed ahead of a batch already known not to clear it."""
        waits_for = self.waits_for
        return waits_for is not None and waits_for.done() and not waits_for.result()

    async def full(self) -> bool:
        """Whether the claim took a whole batch (a backlog is likely behind it); False if it failed."""
        either: list[asyncio.Future[Any]] = [self.claimed, self.task]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        return self.claimed.done() and self.claimed.result() == self.size


class _GivenUp(Exception):
    """A batch claimed ahead is not to be sent: its claim is rolled back."""


class _EpochUnreadable(Exception):
    """The broker's epoch could not be read: the batch's claim is rolled back."""


# Set on each of the producer's connections open when the broker's epoch was read (`_same_broker`).
_EPOCH_READ = "songda_epoch_read"
# Claims the oldest unpublished rows and marks them published, in the batch's transaction (its commit, after the
# sends, is what makes the mark stick), returning the envelope as the bytes to send (PostgreSQL's own JSON text).
# One write of each row, where a locking SELECT and a marking UPDATE had been two (and a round trip more).
_CLAIM = (
    "WITH claimed AS (UPDATE outbox SET published_at = now() WHERE id = ANY(ARRAY("
    "SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))"
    " RETURNING id, event_id, topic, key, type, convert_to(envelope::text, 'UTF8') AS value,"
    " envelope->>'traceparent' AS traceparent)"
    " SELECT * FROM claimed ORDER BY id"
)
# Puts claimed rows that were not sent back in the backlog, counting an attempt and its error for those that failed
# ($2 is NULL for a row after a failure in its chain, never tried).
_UNCLAIM = (
    "UPDATE outbox SET published_at = NULL, attempts = attempts + (f.error IS NOT NULL)::int,"
    " last_error = coalesce(f.error, last_error)"
    " FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE outbox.id = f.id"
)
_KNOWN_EPOCH = "SELECT broker_epoch FROM outbox_relay WHERE relay = $1 FOR UPDATE"
_RECORD_EPOCH = (
    "INSERT INTO outbox_relay (relay, broker_epoch) VALUES ($1, $2)"
    " ON CONFLICT (relay) DO UPDATE SET broker_epoch = excluded.broker_epoch, updated_at = now()"
)
_REQUEUE = "UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL"
