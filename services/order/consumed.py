"""What the order service reads of the events it consumes: one narrow view per event, only the fields it uses,
named and typed as the publisher's model has them (services/dispatch/events.py, services/redemption/events.py).
The after-sales views are the contract this service wrote ahead of the after-sales publisher. tests/contracts/
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


class AftersalesApprovedView(AftersalesCaseView):
    refund_fen: int
    reason: str | None = None


class CompensationGrantedView(AftersalesCaseView):
    amount_fen: int
    reason: str | None = None
