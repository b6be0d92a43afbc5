"""How the redemption service reacts to order events and to code expiry.

- `order.paid.v1`: issues a delivery's finish code (shown at the door; the merchant's own rider's handover redeems
  it as proof of delivery);
- `order.accepted.v1`: issues a self-pickup order's pickup code (not before: an order not accepted in time is
  refunded in full, so a pickup code redeemed earlier would hand over goods the customer gets their money back for);
- `order.cancelled.v1`, and `order.refunded.v1` once the order is fully refunded: revokes the order's live codes;
- `order.completed.v1`: a code still live is no longer needed and expires.
The consumer skips (`Selective`) an order.paid or order.accepted that issues no code and a partial refund.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import service
from services.redemption.settings import RedemptionSettings
from shared.clock import Clock
from shared.events.consumer import EventHandler, Selective
from shared.events.envelope import Envelope
from shared.events.models import Timer
from shared.timers import TimerHandler
from shared.vault import Vault


def _issues_a_code(event: Envelope) -> bool:
    return service.issues_code(event.type, event.data)


def _fully_refunded(event: Envelope) -> bool:
    return event.data.get("status") == "refunded"


class RedemptionReactions:
    def __init__(self, *, settings: RedemptionSettings, clock: Clock, vault: Vault) -> None:
        self.settings = settings
        self.clock = clock
        self.vault = vault

    def event_handlers(self) -> dict[str, EventHandler]:
        return {
            "order.paid.v1": Selective(self.on_paid_or_accepted, concerns=_issues_a_code),
            "order.accepted.v1": Selective(self.on_paid_or_accepted, concerns=_issues_a_code),
            "order.cancelled.v1": self.on_order_cancelled,
            "order.refunded.v1": Selective(self.on_order_refunded, concerns=_fully_refunded),
            "order.completed.v1": self.on_order_completed,
        }

    def timer_handlers(self) -> dict[str, TimerHandler]:
        return {service.EXPIRE_TIMER: self.on_expiry}

    async def on_paid_or_accepted(self, session: AsyncSession, event: Envelope) -> None:
        """order.paid or order.accepted: the code this event issues for the order's mode, if any."""
        await service.issue_order_codes(session, self.clock, self.settings, self.vault, event.type, event.data)

    async def on_order_cancelled(self, session: AsyncSession, event: Envelope) -> None:
        reason = f"order cancelled: {event.data.get('reason') or ''}".strip(": ")
        await service.end_order_codes(session, self.clock, event.subject, revoke=True, reason=reason)

    async def on_order_refunded(self, session: AsyncSession, event: Envelope) -> None:
        await service.end_order_codes(session, self.clock, event.subject, revoke=True, reason="order refunded")

    async def on_order_completed(self, session: AsyncSession, event: Envelope) -> None:
        await service.end_order_codes(session, self.clock, event.subject, revoke=False, reason="order completed")

    async def on_expiry(self, session: AsyncSession, timer: Timer) -> None:
        await service.expire_code(session, self.clock, timer.key)
