"""Which broker the relays publish to: a fresh broker (Tansu's memory storage after a restart, a rebuilt cluster)
has never seen the events already published, and the relay must send them again.

The broker's epoch is the first record of the `songda.broker-epoch` topic, written by whichever relay finds the topic
empty. Each relay keeps the epoch it last published to (`outbox_relay`); when the broker answers with another one,
the relay puts every outbox row it still retains back in its backlog, and republishes them in order. Consumers start a
fresh broker from the earliest offset and drop what they had handled through their inbox.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events.kafka_security import PLAINTEXT, KafkaSecurity
from shared.events.topics import EPOCH_TOPIC

_EPOCH_PARTITION = TopicPartition(EPOCH_TOPIC, 0)


class BrokerEpoch:
    def __init__(
        self,
        bootstrap_servers: str,
        producer: AIOKafkaProducer,
        timeout_seconds: float = 10.0,
        security: KafkaSecurity = PLAINTEXT,
        consumer_timeout_ms: int = 200,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.consumer_timeout_ms = consumer_timeout_ms
        self.producer = producer
        self.timeout = timeout_seconds
        self.consumer: AIOKafkaConsumer | None = None

    async def read(self) -> str:
        """The broker's epoch, written first if the broker has none."""
        if self.consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                client_id="songda-epoch",
                consumer_timeout_ms=self.consumer_timeout_ms,
                **self.security.client_kwargs(),
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            consumer.assign([_EPOCH_PARTITION])
            self.consumer = consumer
        # Paused between reads: an assigned partition is otherwise fetched in the background, a broker round trip
        # every half second for a record that is read once every few seconds.
        self.consumer.resume(_EPOCH_PARTITION)
        end = (await self.consumer.end_offsets([_EPOCH_PARTITION]))[_EPOCH_PARTITION]
        if end == 0:
            await self.producer.send_and_wait(EPOCH_TOPIC, uuid.uuid4().hex.encode(), partition=0)
        first = (await self.consumer.beginning_offsets([_EPOCH_PARTITION]))[_EPOCH_PARTITION]
        self.consumer.seek(_EPOCH_PARTITION, first)
        try:
            record = await asyncio.wait_for(self.consumer.getone(_EPOCH_PARTITION), self.timeout)
        finally:
            self.consumer.pause(_EPOCH_PARTITION)
        return (record.value or b"").decode()

    async def stop(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()
