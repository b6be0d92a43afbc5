"""Producer construction and a start that waits for the broker instead of failing the service."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    # acks=all always: acks=0 loses data on Tansu and anywhere else. Idempotence is a setting (Tansu lacks it).
    # The relay appends a whole wave before it yields and then awaits it (shared/events/relay.py), so lingering only
    # delays the wave; and aiokafka keeps one request in flight per broker, so a wave goes out in as few requests as
    # its partitions' batches allow: 256 KiB batches carry a 1,000-row wave in one request, not one per 16 KiB.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"songda-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=0,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        **settings.kafka_security().client_kwargs(),
    )


async def start_producer(producer: AIOKafkaProducer, *, max_backoff: float = 10.0) -> None:
    """Retries until the broker answers; the caller may cancel."""
    delay = 0.2
    while True:
        try:
            await producer.start()
            return
        except (KafkaError, OSError) as exc:
            log.warning("broker not reachable yet, retrying", extra={"error": repr(exc), "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
