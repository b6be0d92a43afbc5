"""How the redemption service reacts to order events and to code expiry.

- `order.paid.v1`: issues a delivery's finish code (shown at the door; the merchant's own rider's handover redeems
  it as proof of delivery);
- `order.accepted.v1`: issues a self-pickup order's pickup code (not before: an order not accepted in time is
  refunded in full, so a pickup code redeemed earlier would hand over goods the customer gets their money back for);
- `order.cancelled.v1`, and `order.refunded.v1` once the order is fully refunded: revokes the order's live codes;
- `order.completed.v1`: a code still live is no longer needed and expires.
The consumer skips (`concerns`) an order.paid or order.accepted that issues no code and a partial refund. Each
handler reads its event through its view (services/redemption/consumed.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import issuing
from services.redemption.consumed import OrderCancelled, OrderRefunded, OrderToCode
from services.redemption.settings import RedemptionSettings
from shared.clock import Clock
from shared.events.consumer import EventHandler
from shared.events.contracts import EventView, handles
from shared.events.envelope import Envelope
from shared.events.models import Timer
from shared.timers import TimerHandler
from shared.vault import Vault


def _issues_on(event_type: str) -> Callable[[OrderToCode], bool]:
    """Whether an order event of `event_type` issues the code its order's fulfilment mode needs."""
    return lambda order: issuing.issues_code(event_type, order)


def _fully_refunded(data: OrderRefunded) -> bool:
    return data.status == "refunded"


class RedemptionReactions:
    def __init__(self, *, settings: RedemptionSettings, clock: Clock, vault: Vault) -> None:
        self.settings = settings
        self.clock = clock
        self.vault = vault

    def event_handlers(self) -> dict[str, EventHandler]:
        return {
            "order.paid.v1": handles(OrderToCode, self.on_paid_or_accepted, concerns=_issues_on("order.paid.v1")),
            "order.accepted.v1": handles(
                OrderToCode, self.on_paid_or_accepted, concerns=_issues_on("order.accepted.v1")
            ),
            "order.cancelled.v1": handles(OrderCancelled, self.on_order_cancelled),
            "order.refunded.v1": handles(OrderRefunded, self.on_order_refunded, concerns=_fully_refunded),
            "order.completed.v1": handles(EventView, self.on_order_completed),
        }

    def timer_handlers(self) -> dict[str, TimerHandler]:
        return {issuing.EXPIRE_TIMER: self.on_expiry}

    async def on_paid_or_accepted(self, session: AsyncSession, event: Envelope, data: OrderToCode) -> None:
        """order.paid or order.accepted: the code this event issues for the order's mode, if any."""
        await issuing.issue_order_codes(session, self.clock, self.settings, self.vault, event.type, data)

    async def on_order_cancelled(self, session: AsyncSession, event: Envelope, data: OrderCancelled) -> None:
        reason = f"order cancelled: {data.reason or ''}".strip(": ")
        await issuing.end_order_codes(session, self.clock, event.subject, revoke=True, reason=reason)

    async def on_order_refunded(self, session: AsyncSession, event: Envelope, data: OrderRefunded) -> None:
        await issuing.end_order_codes(session, self.clock, event.subject, revoke=True, reason="order refunded")

    async def on_order_completed(self, session: AsyncSession, event: Envelope, data: EventView) -> None:
        await issuing.end_order_codes(session, self.clock, event.subject, revoke=False, reason="order completed")

    async def on_expiry(self, session: AsyncSession, timer: Timer) -> None:
        await issuing.expire_code(session, self.clock, timer.key)
