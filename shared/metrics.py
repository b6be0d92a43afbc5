"""Prometheus metrics. Metric objects are module-level (one registry per process); every sample is labelled
with the service, so several apps in one test process don't collide."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response

HTTP_REQUESTS = Counter("songda_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"])
HTTP_DURATION = Histogram(
    "songda_http_request_duration_seconds", "HTTP request duration", ["service", "method", "route"]
)
OUTBOX_BACKLOG = Gauge("songda_outbox_backlog", "Outbox events not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge("songda_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event", ["service"])
OUTBOX_PUBLISHED = Counter("songda_outbox_published_total", "Outbox events published", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "songda_outbox_publish_failures_total", "Outbox publish attempts that failed", ["service"]
)
OUTBOX_REPUBLISHED = Counter(
    "songda_outbox_republished_total", "Published outbox events sent again to a fresh broker", ["service"]
)
CONSUMER_LAG = Gauge("songda_consumer_lag", "Records behind the partition end", ["service", "topic", "partition"])
CONSUMER_HANDLED = Counter("songda_consumer_events_total", "Events consumed", ["service", "topic", "outcome"])
CONSUMER_INFRA_RETRIES = Counter(
    "songda_consumer_infrastructure_retries_total",
    "Event applications retried because the database or the broker was unreachable",
    ["service", "topic"],
)
PARKED_EVENTS = Gauge("songda_parked_events", "Events parked behind a dead letter of their subject", ["service"])
DLQ_RECORDS = Counter("songda_dlq_records_total", "Records sent to a dead-letter topic", ["service", "topic"])
TIMER_BACKLOG = Gauge("songda_timer_backlog", "Timers due and not yet fired", ["service"])
TIMERS_FIRED = Counter("songda_timers_fired_total", "Timers fired", ["service", "kind", "outcome"])


@lru_cache(maxsize=4096)
def _request_series(service: str, method: str, route: str, status: int) -> tuple[Any, Any]:
    """The counter and histogram of one kind of request (looking a labelled child up costs more than using it)."""
    return HTTP_REQUESTS.labels(service, method, route, str(status)), HTTP_DURATION.labels(service, method, route)


@lru_cache(maxsize=4096)
def consumed(service: str, topic: str, outcome: str) -> Any:
    """The counter of one outcome of one consumer's records of one topic, looked up once (as `_request_series`)."""
    return CONSUMER_HANDLED.labels(service, topic, outcome)


@lru_cache(maxsize=4096)
def consumer_lag(service: str, topic: str, partition: int) -> Any:
    return CONSUMER_LAG.labels(service, topic, str(partition))


def observe_request(service: str, method: str, route: str, status: int, seconds: float) -> None:
    requests, duration = _request_series(service, method, route, status)
    requests.inc()
    duration.observe(seconds)


def exposition() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
