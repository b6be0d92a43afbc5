"""A delivery's durable deadlines: placing (right after the delivery is created), the next escalation round, the
reconciliation of a delivery its carriers went silent about, and the cancellation of an offer that lost."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.desk import Desk
from services.dispatch.models import Delivery
from shared.timers import cancel_timer, schedule_timer

PLACE_TIMER = "delivery.place"
ESCALATE_TIMER = "delivery.escalate"
RECONCILE_TIMER = "delivery.reconcile"
CANCEL_OFFER_TIMER = "offer.cancel"


async def arm_escalation(session: AsyncSession, desk: Desk, delivery: Delivery) -> None:
    """The next escalation round, the store's `escalate_after_minutes` from now."""
    minutes = float(delivery.strategy.get("escalate_after_minutes") or 5)
    due = desk.clock.now() + timedelta(minutes=minutes)
    await schedule_timer(session, kind=ESCALATE_TIMER, key=str(delivery.id), due_at=due)


async def watch(session: AsyncSession, desk: Desk, delivery: Delivery) -> None:
    """(Re)arms reconciliation: a delivery silent this long gets queried."""
    due = desk.clock.now() + timedelta(minutes=desk.settings.silent_minutes)
    await schedule_timer(session, kind=RECONCILE_TIMER, key=str(delivery.id), due_at=due)


async def disarm(session: AsyncSession, delivery: Delivery, now: datetime) -> None:
    """An ended delivery is neither escalated nor reconciled any more."""
    for kind in (ESCALATE_TIMER, RECONCILE_TIMER):
        await cancel_timer(session, kind=kind, key=str(delivery.id), now=now)
