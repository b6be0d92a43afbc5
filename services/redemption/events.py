"""Events the redemption service publishes on `redemption.events`, keyed by the order id (or the code id for a
voucher): `code.issued/redeemed/reversed/revoked.v1`. Each carries the code's id, kind, order, store and uses."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption.models import Code
from shared.clock import Clock
from shared.events.envelope import Envelope, new_event
from shared.events.outbox import add_event
from shared.events.topics import events_topic

SOURCE = "redemption"
TOPIC = events_topic(SOURCE)

ISSUED = "code.issued.v1"
REDEEMED = "code.redeemed.v1"
REVERSED = "code.reversed.v1"
REVOKED = "code.revoked.v1"


async def publish(session: AsyncSession, clock: Clock, code: Code, event_type: str, **extra: Any) -> None:
    data = {
        "code_id": str(code.id),
        "kind": code.kind,
        "order_id": code.order_id,
        "merchant_id": code.merchant_id,
        "store_id": code.store_id,
        "customer_id": code.customer_id,
        "status": code.status,
        "uses_total": code.uses_total,
        "uses_left": code.uses_left,
        "valid_until": code.valid_until.isoformat(),
        **extra,
    }
    subject = code.order_id or str(code.id)
    await add_event(session, new_event(event_type, source=SOURCE, subject=subject, data=data, clock=clock))


def envelope(clock: Clock, event_type: str) -> Envelope:
    """An event of `event_type` whose subject and data the database fills in (`redeem_code`, as `publish` would)."""
    return new_event(event_type, source=SOURCE, subject="", data={}, clock=clock)
