"""OpenTelemetry traces: on when an OTLP endpoint is configured, off (and nothing instrumented) otherwise.

A process exports its spans by OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
is set; the exporter reads the other standard `OTEL_EXPORTER_OTLP_*` variables (headers, protocol, timeout) itself.
When tracing is on, the FastAPI apps get server spans (W3C `traceparent` extracted), the services' httpx clients
client spans (`traceparent` injected), every SQLAlchemy engine created afterwards database spans, and the event
envelope carries the context through the outbox and Kafka (`shared/events/envelope.py`, `consumer.py`). When it is
off none of this is installed: the API's no-op tracer is all that runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.util.types import Attributes

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACEPARENT = "traceparent"
# Probes and scrapes are not worth a trace each.
UNTRACED_PATHS = "healthz,readyz,metrics"


def configure_tracing(service: str) -> None:
    """Exports this process's spans by OTLP if an endpoint is configured (once per process); otherwise leaves
    tracing off."""
    if tracing_on() or not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = tracer_provider(service)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    start_tracing(provider)


def tracer_provider(service: str) -> TracerProvider:
    """A provider for `service`'s spans, sampling requests and consumed events with what they cause (no exporter
    yet)."""
    return TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=ParentBased(root=RequestsAndEventsOnly())
    )


class RequestsAndEventsOnly(Sampler):
    """Starts traces at requests and consumed events only: a background worker's database poll, outside any of
    them, would otherwise be a trace of its own every few seconds."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind in (trace.SpanKind.SERVER, trace.SpanKind.CONSUMER):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "RequestsAndEventsOnly"


_tracing = False


def start_tracing(provider: TracerProvider) -> None:
    """Makes `provider` the process's (OpenTelemetry allows one per process) and instruments the apps, clients and
    engines built from now on. SQLAlchemy 2.1 is beyond the instrumentor's declared range, which it otherwise
    refuses without a word (tests/deploy/test_tracing.py shows its spans)."""
    global _tracing
    if trace.get_tracer_provider() is not provider:
        trace.set_tracer_provider(provider)
    SQLAlchemyInstrumentor().instrument(skip_dep_check=True)
    _tracing = True


def stop_tracing() -> None:
    """Instruments nothing built from now on, and starts no consumer spans: tracing off again, for a process (a
    test's) that traced for a while."""
    global _tracing
    SQLAlchemyInstrumentor().uninstrument()
    _tracing = False


def tracing_on() -> bool:
    return _tracing


def trace_app(app: FastAPI) -> None:
    """Server spans for the app's requests, when tracing is on."""
    if tracing_on():
        FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"])


def trace_client(client: httpx.AsyncClient) -> None:
    """Client spans, and `traceparent` sent, for the client's requests, when tracing is on."""
    if tracing_on():
        HTTPXClientInstrumentor.instrument_client(client)


def trace_headers() -> dict[str, str]:
    """The W3C trace context headers of the current span: none outside one, nor when tracing is off."""
    carrier: dict[str, str] = {}
    if _tracing:
        propagate.inject(carrier)
    return carrier


def current_traceparent() -> str | None:
    return trace_headers().get(TRACEPARENT)


def context_of(traceparent: str | None) -> Context | None:
    return propagate.extract({TRACEPARENT: traceparent}) if traceparent else None


def trace_ids() -> dict[str, str]:
    """The current trace and span ids (hex), for log lines; empty outside a recorded span."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": f"{span_context.trace_id:032x}", "span_id": f"{span_context.span_id:016x}"}


@contextmanager
def consuming(traceparent: str | None, name: str, attributes: dict[str, str]) -> Iterator[None]:
    """A consumer span, child of the context the event was published in, around its handling (nothing when
    tracing is off)."""
    if not tracing_on():
        yield
        return
    tracer = trace.get_tracer("songda.events")
    with tracer.start_as_current_span(
        name, context=context_of(traceparent), kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
