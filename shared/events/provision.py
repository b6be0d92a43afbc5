"""Creates the platform's topics on a real Kafka (the chart's topic Job, `songda topics create`).

Unlike the local stack's broker helper, a production cluster needs a replication factor, and the broker-epoch topic
must keep its first record forever (`retention.ms=-1`): relays compare it to tell a rebuilt broker.
Existing topics are left as they are, so running it again (every upgrade) is harmless.
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.events.kafka_security import PLAINTEXT, KafkaSecurity
from shared.events.topics import EPOCH_TOPIC, all_topics


def wanted_topics(partitions: int, replication_factor: int) -> list[NewTopic]:
    """Every topic of the platform as it should be created; the epoch topic has one partition, kept forever."""
    topics = []
    for name in all_topics():
        if name == EPOCH_TOPIC:
            topics.append(NewTopic(name, 1, replication_factor, topic_configs={"retention.ms": "-1"}))
        else:
            topics.append(NewTopic(name, partitions, replication_factor))
    return topics


async def create_missing_topics(
    bootstrap_servers: str, partitions: int, replication_factor: int, *, security: KafkaSecurity = PLAINTEXT
) -> list[str]:
    """Creates the topics the cluster lacks and returns their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted_topics(partitions, replication_factor) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another Job created them first
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
