"""Per-request and per-event context (correlation and causation ids), carried by contextvars into logs and events."""

from __future__ import annotations

from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# The id of the event being handled, so events it causes can name it as their causation.
causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)
# The client's address as this process decided it (see `shared.middleware.client_address`), for audit and limits.
client_address: ContextVar[str | None] = ContextVar("client_address", default=None)
