"""Deadlines and application windows: the settings' defaults, a merchant's overrides within bounds, and a store's
over its merchant's (a bakery and a grocery of one merchant keep different windows).

A merchant may shorten the time it gives itself (to answer, to confirm a receipt) and lengthen the time it gives
the customer (to confirm a proposal, ship a return, escalate, apply), never the reverse: an override cannot be used
to stall a case or to shut the customer out. The arbitration evidence window is ops' alone. Ops extend one case's
deadline through its own route.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.aftersales.domain import Deadline
from services.aftersales.models import Policy as PolicyRow
from services.aftersales.settings import AftersalesSettings
from shared.errors import ValidationFailed

MERCHANT_SIDE = frozenset({Deadline.cancel_answer, Deadline.perishable_answer, Deadline.standard_answer,
                           Deadline.merchant_receipt})  # fmt: skip
CUSTOMER_SIDE = frozenset({Deadline.customer_confirm, Deadline.return_shipment, Deadline.escalation})
WINDOWS = ("perishable_window_hours", "standard_window_hours")
# Local food delivery and pickup are perishable unless the merchant says otherwise; express parcels are not.
PERISHABLE_MODES = frozenset({"delivery", "pickup"})


class PolicyRefused(ValidationFailed):
    code, title = "policy-out-of-bounds", "The override is outside what a merchant may set"


@dataclass(frozen=True)
class Policy:
    minutes: dict[Deadline, int]
    perishable_window_hours: float
    standard_window_hours: float
    perishable: bool | None  # None: decided by the order's fulfilment mode

    def length(self, deadline: Deadline) -> timedelta:
        return timedelta(minutes=self.minutes[deadline])

    def is_perishable(self, fulfilment_mode: str) -> bool:
        return self.perishable if self.perishable is not None else fulfilment_mode in PERISHABLE_MODES

    def window(self, perishable: bool) -> timedelta:
        return timedelta(hours=self.perishable_window_hours if perishable else self.standard_window_hours)


def defaults(settings: AftersalesSettings) -> dict[str, Any]:
    values: dict[str, Any] = {f"{d.value}_minutes": getattr(settings, f"{d.value}_minutes") for d in Deadline}
    values |= {name: getattr(settings, name) for name in WINDOWS}
    return values | {"perishable": None}


def validate(settings: AftersalesSettings, overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides a merchant may keep, or PolicyRefused naming the first that it may not."""
    base = defaults(settings)
    for deadline in Deadline:
        key = f"{deadline.value}_minutes"
        value = overrides.get(key)
        if value is None:
            continue
        if deadline in MERCHANT_SIDE and not 1 <= value <= base[key]:
            raise PolicyRefused(f"{key} may only be shortened (1..{base[key]})", field=key)
        if deadline in CUSTOMER_SIDE and not base[key] <= value <= settings.max_deadline_minutes:
            raise PolicyRefused(f"{key} may only be lengthened ({base[key]}..{settings.max_deadline_minutes})",
                                field=key)  # fmt: skip
        if deadline not in MERCHANT_SIDE | CUSTOMER_SIDE:
            raise PolicyRefused(f"{key} is set by ops", field=key)
    for key in WINDOWS:
        value = overrides.get(key)
        if value is not None and not base[key] <= value <= settings.max_deadline_minutes / 60:
            raise PolicyRefused(f"{key} may only be lengthened", field=key)
    return {k: v for k, v in overrides.items() if v is not None}


async def overrides_of(session: AsyncSession, merchant_id: str, store_id: str = "") -> dict[str, Any]:
    """The merchant's overrides, and the store's over them (a store of its own: `store_id` given)."""
    rows = (
        await session.scalars(
            select(PolicyRow)
            .where(PolicyRow.merchant_id == merchant_id, PolicyRow.store_id.in_(("", store_id)))
            .order_by(PolicyRow.store_id)
        )
    ).all()
    merged: dict[str, Any] = {}
    for row in rows:  # the merchant-wide row ("") first, the store's over it
        merged |= row.overrides
    return merged


async def load(session: AsyncSession, settings: AftersalesSettings, merchant_id: str, store_id: str = "") -> Policy:
    values = defaults(settings) | await overrides_of(session, merchant_id, store_id)
    return Policy(
        minutes={d: int(values[f"{d.value}_minutes"]) for d in Deadline},
        perishable_window_hours=float(values["perishable_window_hours"]),
        standard_window_hours=float(values["standard_window_hours"]),
        perishable=values.get("perishable"),
    )


async def save(
    session: AsyncSession, settings: AftersalesSettings, merchant_id: str, store_id: str, overrides: dict[str, Any],
    *, by: str, now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """Replaces the overrides of the merchant (`store_id` empty) or of one store; answers what now applies."""
    kept = validate(settings, overrides)
    stmt = insert(PolicyRow).values(merchant_id=merchant_id, store_id=store_id, overrides=kept, updated_by=by,
                                    updated_at=now)  # fmt: skip
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[PolicyRow.merchant_id, PolicyRow.store_id],
            set_={"overrides": stmt.excluded.overrides, "updated_by": by, "updated_at": now},
        )
    )
    await session.flush()
    return defaults(settings) | await overrides_of(session, merchant_id, store_id)
