"""What every request to the gateway passes first: the per-address (or, for callbacks, per-caller) rate limit and
the declared body size."""

from __future__ import annotations

from starlette.datastructures import State

from gateway.ratelimit import AdmissionLimits
from shared import context
from shared.errors import PayloadTooLarge, TooManyRequests

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def admit(state: State, path: str, content_length: str | None) -> None:
    """Raises 429 for a caller over its rate limit and 413 for a declared body over `max_body_bytes`."""
    if path in UNLIMITED_PATHS:
        return
    limits: AdmissionLimits = state.admission_limits
    wait, detail = limits.take(path, context.client_address.get() or "unknown")
    if wait is not None:
        raise TooManyRequests(retry_after=wait, detail=detail)
    max_body: int = state.settings.max_body_bytes
    if content_length and content_length.isdigit() and int(content_length) > max_body:
        raise PayloadTooLarge(f"The body exceeds {max_body} bytes")
