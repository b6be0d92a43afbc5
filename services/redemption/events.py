"""Events the redemption service publishes on `redemption.events`, keyed by the order id (or the code id for a
voucher): `code.issued/redeemed/reversed/revoked.v1`. Each carries the code's id, kind, order, store and uses
(`CodeFacts`); a redemption and a reversal add the ledger entry, a revocation its reason. `PUBLISHED` is the
contract: `publish` builds the event's model, so no field outside it can be sent. `code.redeemed.v1` is also
written by the database function `redeem_code` (migration redemption_0005), with exactly `CodeRedeemed`'s fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption.models import Code
from shared.clock import Clock
from shared.events.contracts import EventPayload, Timestamp
from shared.events.envelope import Envelope, new_event
from shared.events.outbox import add_event
from shared.events.topics import events_topic

SOURCE = "redemption"
TOPIC = events_topic(SOURCE)

ISSUED = "code.issued.v1"
REDEEMED = "code.redeemed.v1"
REVERSED = "code.reversed.v1"
REVOKED = "code.revoked.v1"


class CodeFacts(EventPayload):
    """The code as every redemption event carries it."""

    code_id: str
    kind: Literal["pickup", "finish", "voucher"]
    order_id: str | None = Field(description="None for a voucher")
    merchant_id: str
    store_id: str
    customer_id: str
    status: str = Field(description="`active`, `redeemed`, `expired`, `revoked` or `frozen`")
    uses_total: int
    uses_left: int
    valid_until: Timestamp


class CodeRedeemed(CodeFacts):
    redemption_id: str
    count: int
    redeemed_by: str = Field(description="The actor: `merchant:<staff>`, `rider:<id>`, `ops:<id>`")
    device_id: str | None


class CodeReversed(CodeFacts):
    redemption_id: str
    count: int
    reason: str


class CodeRevoked(CodeFacts):
    reason: str | None


PUBLISHED: dict[str, type[EventPayload]] = {
    ISSUED: CodeFacts,
    REDEEMED: CodeRedeemed,
    REVERSED: CodeReversed,
    REVOKED: CodeRevoked,
}


async def publish(session: AsyncSession, clock: Clock, code: Code, event_type: str, **extra: Any) -> None:
    """Stages the event in the outbox of the caller's transaction: the code's facts and `extra`, as the event's model
    (refusing a field it lacks)."""
    facts = {
        "code_id": str(code.id),
        "kind": code.kind,
        "order_id": code.order_id,
        "merchant_id": code.merchant_id,
        "store_id": code.store_id,
        "customer_id": code.customer_id,
        "status": code.status,
        "uses_total": code.uses_total,
        "uses_left": code.uses_left,
        "valid_until": code.valid_until,
    }
    data = PUBLISHED[event_type].model_validate(facts | extra).model_dump(mode="json")
    subject = code.order_id or str(code.id)
    await add_event(session, new_event(event_type, source=SOURCE, subject=subject, data=data, clock=clock))


def envelope(clock: Clock, event_type: str) -> Envelope:
    """An event of `event_type` whose subject and data the database fills in (`redeem_code`, as `publish` would)."""
    return new_event(event_type, source=SOURCE, subject="", data={}, clock=clock)
