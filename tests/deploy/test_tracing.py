"""Tracing: one trace from a merchant's call at the gateway, through the order service, its event across the outbox,
the relay and Kafka, to the consuming service's handler, with database spans on the way; and log lines that name it.

Every server runs in this process, so one in-memory exporter sees the spans of all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from cryptography.hazmat.primitives import serialization
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deploy.local.ports import free_port
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from shared.events.envelope import Envelope, new_event
from shared.events.relay import OutboxRelay
from shared.events.topics import events_topic
from shared.logging import JsonFormatter
from shared.tracing import (
    ENDPOINT_VARIABLES,
    configure_tracing,
    start_tracing,
    stop_tracing,
    tracer_provider,
    tracing_on,
)
from tests.order.conftest import new_pay_keys, order_stack
from tests.redemption.conftest import CUSTOMER, redemption_stack
from tests.support import JWT_KEY, serve

# OpenTelemetry takes one provider per process: this module's, kept across its tests.
EXPORTER = InMemorySpanExporter()
PROVIDER = tracer_provider("songda-test")
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test (apps and engines built inside it are instrumented), off again after it."""
    start_tracing(PROVIDER)
    EXPORTER.clear()
    try:
        yield EXPORTER
    finally:
        stop_tracing()


def _gateway_settings(order_url: str, redemption_url: str) -> GatewaySettings:
    dead = f"http://127.0.0.1:{free_port()}"
    key = JWT_KEY.private_bytes(  # the services under test trust this key
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return GatewaySettings(
        order_url=order_url,
        redemption_url=redemption_url,
        dispatch_url=dead,
        aftersales_url=dead,
        notify_url=dead,
        signing_key=key,
        dev_mode=True,
        wechat_mode="sandbox",
    )


async def _record_of(
    bootstrap: str, topic: str, key: str, event_type: str, within: float = 20
) -> ConsumerRecord[Any, Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    if record.key == key.encode() and dict(record.headers)["type"] == event_type.encode():
                        return record
    finally:
        await consumer.stop()
    raise AssertionError(f"no {event_type} of {key} in {topic}")


def _scope(span: ReadableSpan) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope else ""


async def test_one_trace_covers_the_gateway_the_service_its_event_and_the_consuming_handler(
    spans: InMemorySpanExporter, db_url: str, redemption_db_url: str, bootstrap: str
) -> None:
    async with (
        order_stack(db_url, bootstrap, new_pay_keys()) as order,
        redemption_stack(redemption_db_url, bootstrap) as redemption,
        serve(create_gateway(_gateway_settings(str(order.client.base_url), str(redemption.client.base_url)))) as gw,
        httpx.AsyncClient(base_url=gw) as gateway,
    ):
        await order.store()
        sku = (await order.product())["skus"][0]["id"]
        placed = await order.paid_order(sku, mode="pickup")
        oid = placed["id"]
        minted = await gateway.post(
            "/v1/auth/dev-token",
            json={"role": "merchant", "sub": "staff-1", "merchant_id": "m-1", "store_ids": ["s-1"]},
        )
        token = minted.json()["access_token"]

        accepted = await gateway.post(f"/v1/orders/{oid}/accept", headers={"Authorization": f"Bearer {token}"})
        assert accepted.status_code == 200, accepted.text

        # The order service's relay publishes the event; the redemption service's consumer handles the record.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            relay = OutboxRelay(
                service="order",
                engine=order.sessionmaker.kw["bind"],
                sessionmaker=order.sessionmaker,
                producer=producer,
            )
            assert (await relay.publish_batch())[1] == 0
        finally:
            await producer.stop()
        record = await _record_of(bootstrap, events_topic("order"), oid, "order.accepted.v1")
        await redemption.feed.consumer.handle_record(record)
        codes = (await redemption.client.get(f"/v1/codes?order_id={oid}", headers=CUSTOMER)).json()["items"]
        assert [code["kind"] for code in codes] == ["pickup"]

    finished = spans.get_finished_spans()
    consumed = [s for s in finished if s.name == "order.accepted.v1 process"]
    assert len(consumed) == 1
    trace_id = consumed[0].context.trace_id
    one_trace = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in one_trace}

    # Its root is the gateway's server span of the merchant's call, and the order service's own server span is in it.
    (root,) = [s for s in one_trace if s.parent is None]
    assert root.kind == trace.SpanKind.SERVER
    assert root.attributes
    assert root.attributes.get("http.route") == "/{path:path}"
    order_server = [
        s
        for s in one_trace
        if s.kind == trace.SpanKind.SERVER
        and s.attributes
        and s.attributes.get("http.route") == "/v1/orders/{order_id}/accept"
    ]
    assert len(order_server) == 1

    # The event carries the context it was written in, in the envelope and in the record's header.
    envelope = Envelope.from_bytes(record.value)
    assert envelope.traceparent
    assert envelope.traceparent.split("-")[1] == f"{trace_id:032x}"
    assert dict(record.headers)["traceparent"] == envelope.traceparent.encode()

    # The consumer span's ancestors lead back through the order service's span to the gateway's.
    ancestors = []
    span: ReadableSpan | None = consumed[0]
    while span is not None and span.parent is not None:
        span = by_id.get(span.parent.span_id)
        ancestors.append(span)
    assert order_server[0] in ancestors
    assert ancestors[-1] is root

    # Database spans: the order service's writes under its server span, the handler's under the consumer span.
    db_parents = {s.parent.span_id for s in one_trace if _scope(s).endswith("sqlalchemy") and s.parent}
    assert order_server[0].context.span_id in db_parents
    assert consumed[0].context.span_id in db_parents


def test_log_lines_carry_the_trace_id(spans: InMemorySpanExporter) -> None:
    formatter = JsonFormatter("order")
    record = logging.LogRecord("songda", logging.INFO, __file__, 1, "placed", (), None)
    assert "trace_id" not in formatter.format(record)
    with trace.get_tracer("test").start_as_current_span("request", kind=trace.SpanKind.SERVER) as span:
        line = formatter.format(record)
        event = new_event("order.placed.v1", source="order", subject="o-1", data={})
    assert f'"trace_id":"{span.get_span_context().trace_id:032x}"' in line
    assert event.traceparent is not None


def test_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    configure_tracing("order")
    assert not tracing_on()
    with trace.get_tracer("test").start_as_current_span("request", kind=trace.SpanKind.SERVER):
        event = new_event("order.placed.v1", source="order", subject="o-1", data={})
    assert event.traceparent is None
