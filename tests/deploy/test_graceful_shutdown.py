"""SIGTERM to a service process in the middle of consuming: it stops fetching, lets the handler in hand finish,
commits the offsets of what it handled and exits within the grace period; every event it handled is applied whole
(its inbox row with the outbox row its handler wrote), none half, and the rest are applied once by the next
consumer of the group."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.db import create_engine, create_sessionmaker
from shared.events.consumer import EventConsumer
from shared.events.envelope import new_event
from shared.keys import public_pem
from tests.deploy.drill_app import DrillSettings, pong_handler
from tests.support import JWT_KEY, count, eventually, run_sql

SONGDA = Path(sys.executable).parent / "songda"
ROOT = Path(__file__).resolve().parents[2]
HANDLED = "SELECT count(*) FROM inbox WHERE consumer = 'drill'"
PONGED = "SELECT count(*) FROM outbox WHERE type = 'drill.ponged.v1'"
EVENTS = 12
GRACE_SECONDS = 8.0


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        await consumer.stop()


async def test_sigterm_mid_consumption_finishes_the_event_in_hand_commits_and_loses_nothing(
    db_url: str, bootstrap: str, tmp_path: Path
) -> None:
    topic = f"drill{uuid.uuid4().hex[:8]}.events"
    group = "drill"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(EVENTS):
            event = new_event("drill.ping.v1", source="drill", subject=f"ping-{n}", data={})
            await producer.send_and_wait(topic, event.to_bytes(), key=b"drill", partition=0)
    finally:
        await producer.stop()

    started = tmp_path / "started"
    started.touch()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "DRILL_DATABASE_URL": db_url,
        "DRILL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRILL_CONSUMES": json.dumps([topic]),
        "DRILL_HANDLER_SECONDS": "1.0",
        "DRILL_STARTED_FILE": str(started),
        "DRILL_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "DRILL_JWT_PUBLIC_KEYS": public_pem(JWT_KEY),  # type: ignore[arg-type]
    }
    log = (tmp_path / "drill.log").open("wb")
    process = await asyncio.to_thread(
        subprocess.Popen,
        [str(SONGDA), "serve", "tests.deploy.drill_app:create_app", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:

        async def third_begun() -> bool:
            assert process.poll() is None, (tmp_path / "drill.log").read_text()
            return len(started.read_text().split()) >= 3

        await eventually(third_begun, within=60)
        in_hand = started.read_text().split()[-1]  # its handler is asleep in its transaction
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(process.wait, GRACE_SECONDS + 10)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert returncode == -signal.SIGTERM, (tmp_path / "drill.log").read_text()
    assert took < GRACE_SECONDS, took

    engine = create_engine(db_url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    try:
        handled = await count(sessionmaker, HANDLED)
        ponged = await count(sessionmaker, PONGED)
        assert 3 <= handled < EVENTS
        assert ponged == handled  # every handled event whole: its inbox row with its handler's outbox row
        assert await run_sql(sessionmaker, "SELECT consumer FROM inbox WHERE event_id = :id", id=in_hand) == [
            ("drill",)
        ]
        assert await _committed(bootstrap, group, topic) == handled  # committed what it handled, and no more

        # The next consumer of the group reads on from the commit and applies the rest, each once.
        settings = DrillSettings(database_url=db_url, kafka_bootstrap_servers=bootstrap)
        stopping = asyncio.Event()
        consumer = EventConsumer(
            service="drill", sessionmaker=sessionmaker, bootstrap_servers=bootstrap, topics=[topic],
            handlers={"drill.ping.v1": pong_handler(settings)}, dlq_producer=None,  # type: ignore[arg-type]
            stopping=stopping,
        )  # fmt: skip
        running = asyncio.create_task(consumer.run())

        async def all_handled() -> bool:
            return await count(sessionmaker, HANDLED) == EVENTS

        await eventually(all_handled, within=60)
        stopping.set()
        await running
        assert await count(sessionmaker, PONGED) == EVENTS
        assert await _committed(bootstrap, group, topic) == EVENTS
    finally:
        await engine.dispose()
