"""Payment notifications as kept: a handled one whole (for audit and dispute), a refused one (anyone can send
those) only as its digest, size and a bounded prefix, deleted after `refused_retention_days` by the repeating
`payment_notification.prune` timer."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from services.order.models import PaymentNotification
from services.order.settings import OrderSettings
from shared.timers import arm_timer, schedule_timer

PRUNE_TIMER = "payment_notification.prune"
REFUSED = "rejected"  # outcomes `rejected:<why>`


def record(headers: dict[str, str], body: bytes, received_at: datetime) -> PaymentNotification:
    """A notification's record before it is checked: whole until `keep_refused` trims it."""
    return PaymentNotification(
        headers=headers,
        body=body.decode("utf-8", errors="replace"),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        received_at=received_at,
        outcome=REFUSED,
    )


def keep_refused(notification: PaymentNotification, settings: OrderSettings) -> None:
    prefix = settings.refused_notification_prefix_bytes
    notification.body = notification.body.encode()[:prefix].decode("utf-8", errors="ignore")
    notification.headers = {key: value[:256] for key, value in notification.headers.items()}


async def arm_pruning(session: AsyncSession, settings: OrderSettings, now: datetime) -> None:
    due = now + timedelta(minutes=settings.notification_prune_minutes)
    await arm_timer(session, kind=PRUNE_TIMER, key="refused", due_at=due)


async def prune(session: AsyncSession, settings: OrderSettings, now: datetime) -> None:
    await session.execute(
        delete(PaymentNotification).where(
            PaymentNotification.outcome.startswith(REFUSED),
            PaymentNotification.received_at < now - timedelta(days=settings.refused_retention_days),
        )
    )
    due = now + timedelta(minutes=settings.notification_prune_minutes)
    await schedule_timer(session, kind=PRUNE_TIMER, key="refused", due_at=due)
