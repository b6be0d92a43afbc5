"""Replaying a dead-letter topic: each record goes back to its original topic with its original key and value.

Consumers that had already handled the event drop the copy through their inbox; the one that failed releases its
held dead letter (the copy carries `songda-replayed-from`) and applies it, then what was parked behind it. Progress
is kept in the `songda-dlq-replay` consumer group, so a record is replayed once per run of the command, and a replay
interrupted half-way resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events.consumer import DLQ_HEADER_PREFIX
from shared.events.kafka_security import PLAINTEXT, KafkaSecurity

REPLAY_GROUP = "songda-dlq-replay"


@dataclass
class ReplayReport:
    replayed: int
    skipped: int


async def replay_dlq(
    bootstrap_servers: str, topic: str, *, idle_polls: int = 3, security: KafkaSecurity = PLAINTEXT
) -> ReplayReport:
    """Replays everything in `topic` (a `.dlq` topic) not replayed before; returns when the topic is drained."""
    if not topic.endswith(".dlq"):
        raise ValueError(f"{topic} is not a dead-letter topic")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=REPLAY_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=2_000,
        **security.client_kwargs(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **security.client_kwargs())
    await consumer.start()
    await producer.start()
    report = ReplayReport(replayed=0, skipped=0)
    try:
        quiet = 0
        while quiet < idle_polls:
            batch = await consumer.getmany(timeout_ms=1_000)
            if not batch:
                quiet += 1
                continue
            quiet = 0
            for tp, records in batch.items():
                for record in records:
                    headers = dict(record.headers or ())
                    original = headers.get("songda-original-topic")
                    if not original:
                        report.skipped += 1
                        continue
                    await producer.send_and_wait(
                        original.decode(),
                        value=record.value,
                        key=record.key,
                        headers=[
                            *((k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)),
                            ("songda-replayed-from", f"{topic}:{tp.partition}:{record.offset}".encode()),
                        ],
                    )
                    report.replayed += 1
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    return report
