"""Reading dead-letter topics (`<topic>.dlq`) off the broker, the embedded Tansu and a real Kafka alike: how many
records each holds and how many `songda dlq replay-topic` has not sent back yet, and the records themselves with
the headers the consumer wrote (the error, where the event came from, which consumer gave up on it)."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events.dlq import REPLAY_GROUP
from shared.events.inspect import group_lag, topic_offsets
from shared.events.kafka_security import PLAINTEXT, KafkaSecurity
from shared.events.topics import all_topics


@dataclass(frozen=True)
class DeadLetterCount:
    topic: str
    held: int  # records the topic still holds
    not_replayed: int  # of those, the ones `songda dlq replay-topic` has not sent back


@dataclass(frozen=True)
class DeadLetterRecord:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    value: bytes

    @property
    def error(self) -> str:
        return self.headers.get("songda-error", "")

    @property
    def origin(self) -> str:
        """`<topic>@<partition>:<offset>` of the event the consumer failed on."""
        h = self.headers
        return f"{h.get('songda-original-topic', '?')}@{h.get('songda-original-partition', '?')}:" + h.get(
            "songda-original-offset", "?"
        )


def dead_letter_topics() -> list[str]:
    return [topic for topic in all_topics() if topic.endswith(".dlq")]


async def dead_letter_counts(
    bootstrap_servers: str, topics: list[str] | None = None, *, security: KafkaSecurity = PLAINTEXT
) -> list[DeadLetterCount]:
    """Per dead-letter topic (default: every one of the platform that exists), by name."""
    wanted = set(topics or dead_letter_topics())
    held: dict[str, int] = {}
    low: dict[tuple[str, int], int] = {}
    high: dict[tuple[str, int], int] = {}
    for row in await topic_offsets(bootstrap_servers, security=security):
        if row.topic in wanted:
            held[row.topic] = held.get(row.topic, 0) + row.high - row.low
            low[(row.topic, row.partition)], high[(row.topic, row.partition)] = row.low, row.high
    replayed = {
        (row.topic, row.partition): row.committed
        for row in await group_lag(bootstrap_servers, REPLAY_GROUP, sorted(held), security=security)
    }
    not_replayed = dict.fromkeys(held, 0)
    for (topic, partition), end in high.items():
        start = max(replayed.get((topic, partition)) or 0, low[(topic, partition)])
        not_replayed[topic] += max(end - start, 0)
    return [DeadLetterCount(topic, held[topic], not_replayed[topic]) for topic in sorted(held)]


async def read_dead_letters(
    bootstrap_servers: str, topic: str, *, limit: int = 100, security: KafkaSecurity = PLAINTEXT
) -> list[DeadLetterRecord]:
    """The first `limit` records the topic holds, by partition and offset, read without a consumer group."""
    if not topic.endswith(".dlq"):
        raise ValueError(f"{topic} is not a dead-letter topic")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, **security.client_kwargs()
    )
    await consumer.start()
    records: list[DeadLetterRecord] = []
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while len(records) < limit and await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1_000, max_records=limit)).get(tp, []):
                    if record.offset >= ends[tp] or len(records) >= limit:
                        break
                    records.append(
                        DeadLetterRecord(
                            topic=topic,
                            partition=tp.partition,
                            offset=record.offset,
                            key=(record.key or b"").decode(errors="replace"),
                            headers={k: v.decode(errors="replace") for k, v in record.headers or ()},
                            value=record.value or b"",
                        )
                    )
    finally:
        await consumer.stop()
    return records
