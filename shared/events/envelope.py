"""The event envelope every service publishes: `id type source subject time correlation_id causation_id traceparent
data`. `traceparent` is the W3C trace context the event was written in (CloudEvents' distributed-tracing extension),
so a consumer's span joins the trace of the request or event that caused it (shared/tracing.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from shared import context
from shared.clock import Clock, SystemClock
from shared.tracing import current_traceparent

_SYSTEM_CLOCK = SystemClock()


class Envelope(BaseModel):
    id: uuid.UUID = Field(description="Unique per event; consumers dedupe on it")
    type: str = Field(description="`<aggregate>.<past_tense>.v<N>`, e.g. `order.paid.v1`")
    source: str = Field(description="The publishing service")
    subject: str = Field(description="The aggregate id (the order id for lifecycle events); the Kafka key")
    time: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = Field(default=None, description="W3C trace context of the publishing span, if traced")
    data: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def new_event(type: str, *, source: str, subject: str, data: dict[str, Any], clock: Clock = _SYSTEM_CLOCK) -> Envelope:
    """An envelope whose correlation and causation come from the request or event being handled."""
    return Envelope(
        id=uuid.uuid4(),
        type=type,
        source=source,
        subject=subject,
        time=clock.now(),
        correlation_id=context.correlation_id.get(),
        causation_id=context.causation_id.get(),
        traceparent=current_traceparent(),
        data=data,
    )
