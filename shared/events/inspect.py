"""What an operator reads off the broker, the embedded Tansu and a real Kafka alike (kcat can't speak to Tansu):
each topic's partitions with their first and next offsets, and a consumer group's lag per partition."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events.kafka_security import PLAINTEXT, KafkaSecurity
from shared.events.topics import all_topics


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    low: int  # the first offset still held
    high: int  # the offset the next record gets


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here yet
    high: int

    @property
    def lag(self) -> int:
        return self.high - (self.committed or 0)


async def topic_offsets(bootstrap_servers: str, *, security: KafkaSecurity = PLAINTEXT) -> list[PartitionOffsets]:
    """Every topic's partitions with their low and high watermarks, by topic and partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **security.client_kwargs()
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in sorted(await consumer.topics())
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        low = await consumer.beginning_offsets(partitions)
        high = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return [PartitionOffsets(tp.topic, tp.partition, low[tp], high[tp]) for tp in partitions]


async def group_lag(
    bootstrap_servers: str, group: str, topics: list[str] | None = None, *, security: KafkaSecurity = PLAINTEXT
) -> list[PartitionLag]:
    """For each partition of the topics the group has committed on (among `topics`, default every topic of the
    platform): its committed offset, the high watermark and the difference, by topic and partition. Reads the
    committed offsets without joining the group, so a running consumer is not disturbed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False, **security.client_kwargs()
    )
    await consumer.start()
    try:
        existing = await consumer.topics()
        partitions = [
            TopicPartition(topic, partition)
            for topic in sorted(set(topics or all_topics()) & existing)
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        consumed = {tp.topic for tp, offset in committed.items() if offset is not None}
        partitions = [tp for tp in partitions if tp.topic in consumed]
        high = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    return [PartitionLag(tp.topic, tp.partition, committed[tp], high[tp]) for tp in partitions]
