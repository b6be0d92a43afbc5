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
