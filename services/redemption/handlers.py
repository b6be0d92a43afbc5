"""How the redemption service reacts to order events and to code expiry.

- `order.paid.v1`: issues the code the fulfilment mode needs (pickup code for self-pickup, finish code for a
  delivery, shown at the door and scanned by the merchant's own rider as proof of delivery);
- `order.cancelled.v1`, and `order.refunded.v1` once the order is fully refunded: revokes the order's live codes;
- `order.completed.v1`: a code still live is no longer needed and expires.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import service
from services.redemption.settings import RedemptionSettings
from shared.clock import Clock
from shared.events.consumer import EventHandler
from shared.events.envelope import Envelope
from shared.events.models import Timer
from shared.timers import TimerHandler


class RedemptionReactions:
    def __init__(self, *, settings: RedemptionSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    def event_handlers(self) -> dict[str, EventHandler]:
        return {
            "order.paid.v1": self.on_order_paid,
            "order.cancelled.v1": self.on_order_cancelled,
            "order.refunded.v1": self.on_order_refunded,
            "order.completed.v1": self.on_order_completed,
        }

    def timer_handlers(self) -> dict[str, TimerHandler]:
        return {service.EXPIRE_TIMER: self.on_expiry}

    async def on_order_paid(self, session: AsyncSession, event: Envelope) -> None:
        await service.issue_order_codes(session, self.clock, self.settings, event.data)

    async def on_order_cancelled(self, session: AsyncSession, event: Envelope) -> None:
        reason = f"order cancelled: {event.data.get('reason') or ''}".strip(": ")
        await service.end_order_codes(session, self.clock, event.subject, revoke=True, reason=reason)

    async def on_order_refunded(self, session: AsyncSession, event: Envelope) -> None:
        if event.data.get("status") == "refunded":
            await service.end_order_codes(session, self.clock, event.subject, revoke=True, reason="order refunded")

    async def on_order_completed(self, session: AsyncSession, event: Envelope) -> None:
        await service.end_order_codes(session, self.clock, event.subject, revoke=False, reason="order completed")

    async def on_expiry(self, session: AsyncSession, timer: Timer) -> None:
        await service.expire_code(session, self.clock, timer.key)
