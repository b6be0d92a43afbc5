"""What the order service reads of the events it consumes: one narrow view per event, only the fields it uses,
named and typed as the publisher's model has them (services/dispatch/events.py, services/redemption/events.py,
services/aftersales/events.py).
tests/contracts/
checks each against the publisher's model."""

from __future__ import annotations

from shared.events.contracts import EventView


class DeliveryView(EventView):
    """What the order shows of its delivery; any of it may be missing from a given event."""

    delivery_id: str | None = None
    carrier: str | None = None
    status: str | None = None
    rider: dict[str, str] | None = None
    reason: str | None = None
    eta: str | None = None


class CodeRedeemedView(EventView):
    code_id: str
    kind: str
    order_id: str | None


class CodeReversedView(EventView):
    kind: str
    order_id: str | None


class AftersalesCaseView(EventView):
    """An after-sales case about the order (`order_id`, or else the event's subject)."""

    case_id: str
    order_id: str | None = None


class RefundRequestedView(AftersalesCaseView):
    """An after-sales case asking for its refund: once per case and attempt (ops may retry a failed one)."""

    type: str
    amount_fen: int
    attempt: int
    reason: str | None = None
