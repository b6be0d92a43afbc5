"""`songda topics create` (the chart's topic Job) against the real broker: every topic, once."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deploy.cli import main
from shared.events.provision import create_missing_topics, wanted_topics
from shared.events.topics import EPOCH_TOPIC, all_topics


def test_the_epoch_topic_keeps_its_record_forever() -> None:
    topics = {t.name: t for t in wanted_topics(partitions=6, replication_factor=3)}
    assert set(topics) == set(all_topics())
    assert topics[EPOCH_TOPIC].num_partitions == 1
    assert topics[EPOCH_TOPIC].topic_configs == {"retention.ms": "-1"}
    assert {t.num_partitions for name, t in topics.items() if name != EPOCH_TOPIC} == {6}
    assert {t.replication_factor for t in topics.values()} == {3}


async def test_creates_every_topic_and_is_safe_to_repeat(bootstrap: str) -> None:
    await create_missing_topics(bootstrap, partitions=4, replication_factor=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        assert set(all_topics()) <= set(await admin.list_topics())
    finally:
        await admin.close()
    assert await create_missing_topics(bootstrap, partitions=4, replication_factor=1) == []


def test_cli_reports_what_it_created(bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "create", "--bootstrap-servers", bootstrap, "--replication-factor", "1"]) == 0
    assert "created" in capsys.readouterr().out


async def test_topics_list_and_a_groups_lag_read_the_real_broker(bootstrap: str) -> None:
    """`songda topics list` shows the records a topic holds; `songda lag` a group's committed offset and lag."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from shared.events.inspect import group_lag, topic_offsets

    topic = "order.events"
    await create_missing_topics(bootstrap, partitions=4, replication_factor=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(topic, b"x", key=b"k", partition=0)
    finally:
        await producer.stop()
    before = {(r.topic, r.partition): r for r in await topic_offsets(bootstrap)}
    assert before[(topic, 0)].high - before[(topic, 0)].low >= 3

    group = "lag-probe"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        high = before[(topic, 0)].high
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): high - 2})
    finally:
        await consumer.stop()
    lag = {(r.topic, r.partition): r for r in await group_lag(bootstrap, group)}
    assert lag[(topic, 0)].committed == high - 2
    assert lag[(topic, 0)].lag == 2


def test_cli_lists_topics_and_a_groups_lag(bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "create", "--bootstrap-servers", bootstrap, "--replication-factor", "1"]) == 0
    assert main(["topics", "list", "--bootstrap-servers", bootstrap]) == 0
    assert "order.events" in capsys.readouterr().out
    assert main(["lag", "--group", "a-group-that-never-ran", "--bootstrap-servers", bootstrap]) == 0
    assert "has committed no offsets" in capsys.readouterr().out
