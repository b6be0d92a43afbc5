"""The outbox relay: publishes committed outbox rows to Kafka, at least once, in order per key.

One relay per service is active at a time (a PostgreSQL advisory lock elects it); rows are claimed with
`FOR UPDATE SKIP LOCKED` all the same, so even two leaders could not publish one row concurrently. Within a batch,
rows are grouped by (topic, key): each group is sent one row after another and stops at its first failure, so a
later event of an order is never published before an earlier one. Failures keep the row (and everything after it
for that key) in the backlog, and the relay backs off while the broker is away.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from shared import metrics
from shared.events.models import OutboxEvent

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
        batch_size: int = 200,
        poll_seconds: float = 0.1,
        max_backoff_seconds: float = 10.0,
    ) -> None:
        self.service = service
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.producer = producer
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff_seconds
        self.lock_key = advisory_lock_key(f"songda-outbox-relay:{service}")
        self.is_leader = False

    async def run(self) -> None:
        """Runs until cancelled: waits for leadership, then publishes while it holds it."""
        while True:
            async with self.engine.connect() as lock_conn:
                acquired = await lock_conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_key})
                await lock_conn.commit()
                if not acquired:
                    await asyncio.sleep(max(self.poll_seconds * 20, 1.0))
                    continue
                self.is_leader = True
                try:
                    await self._lead(lock_conn)
                finally:
                    self.is_leader = False

    async def _lead(self, lock_conn: AsyncConnection) -> None:
        delay = self.poll_seconds
        last_check = asyncio.get_running_loop().time()
        while True:
            published, failed = await self.publish_batch()
            if failed:
                delay = min(max(delay * 2, 0.5), self.max_backoff)
                await asyncio.sleep(delay)
            elif published == 0:
                delay = self.poll_seconds
                await asyncio.sleep(delay)
            now = asyncio.get_running_loop().time()
            if now - last_check > 5:
                # The lock lives as long as its connection: make sure it still does.
                await lock_conn.scalar(text("SELECT 1"))
                await lock_conn.commit()
                last_check = now

    async def publish_batch(self) -> tuple[int, int]:
        """Publishes one batch of the backlog; returns (published, failed) counts."""
        async with self.sessionmaker() as session, session.begin():
            rows = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None))
                    .order_by(OutboxEvent.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0, 0
            chains: dict[tuple[str, str], list[OutboxEvent]] = defaultdict(list)
            for row in rows:
                chains[(row.topic, row.key)].append(row)
            outcomes = await asyncio.gather(*(self._send_chain(chain) for chain in chains.values()))
            published_ids = [row_id for sent, _ in outcomes for row_id in sent]
            if published_ids:
                await session.execute(
                    update(OutboxEvent).where(OutboxEvent.id.in_(published_ids)).values(published_at=datetime.now(UTC))
                )
            failures = [failure for _, failure in outcomes if failure is not None]
            for row, error in failures:
                row.attempts += 1
                row.last_error = repr(error)[:1000]
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

    async def _send_chain(self, chain: list[OutboxEvent]) -> tuple[list[int], tuple[OutboxEvent, BaseException] | None]:
        sent: list[int] = []
        for row in chain:
            try:
                await self.producer.send_and_wait(
                    row.topic,
                    value=_envelope_bytes(row),
                    key=row.key.encode(),
                    headers=[("type", row.type.encode()), ("event_id", str(row.event_id).encode())],
                )
            except Exception as exc:  # any failure keeps this row and the rest of its chain in the backlog
                return sent, (row, exc)
            sent.append(row.id)
        return sent, None


def _envelope_bytes(row: OutboxEvent) -> bytes:
    return orjson.dumps(row.envelope)
