"""The canonical delivery state machine, one for every carrier, and the guard every status report passes.

Statuses: `created → rider_assigned → rider_at_store → picked_up → delivering → delivered`, with `pickup_failed`,
`returning → returned`, `cancelled` and `failed`. Carriers' codes are mapped onto these by a table in each
carrier's module. The guard:
- nothing leaves a terminal state;
- a report older than the last applied one (by the carrier's action time) is recorded, not applied;
- a rider withdrawing or being reassigned may send the delivery back to `created` or `rider_assigned`, but only
  before pickup; after pickup nothing goes back;
- the same status again is a duplicate, unless it names a different rider (a reassignment).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    created = "created"
    rider_assigned = "rider_assigned"
    rider_at_store = "rider_at_store"
    picked_up = "picked_up"
    delivering = "delivering"
    delivered = "delivered"
    pickup_failed = "pickup_failed"
    returning = "returning"
    returned = "returned"
    cancelled = "cancelled"
    failed = "failed"


S = DeliveryStatus
TERMINAL = frozenset({S.delivered, S.pickup_failed, S.returned, S.cancelled, S.failed})
BEFORE_PICKUP = frozenset({S.created, S.rider_assigned, S.rider_at_store})
RANK = {
    S.created: 0,
    S.rider_assigned: 1,
    S.rider_at_store: 2,
    S.picked_up: 3,
    S.delivering: 4,
    S.returning: 5,
    S.delivered: 6,
    S.returned: 6,
    S.pickup_failed: 6,
    S.cancelled: 6,
    S.failed: 6,
}
# The event each applied status publishes (`delivery.<name>.v1`).
EVENT_NAME = {
    S.created: "created",
    S.rider_assigned: "rider_assigned",
    S.rider_at_store: "rider_at_store",
    S.picked_up: "picked_up",
    S.delivering: "delivering",
    S.delivered: "delivered",
    S.returning: "exception",
    S.returned: "returned",
    S.pickup_failed: "cancelled",
    S.cancelled: "cancelled",
    S.failed: "cancelled",
}
# Ends the customer hears about as 配送异常 (besides the terminal event itself).
EXCEPTIONAL = frozenset({S.pickup_failed, S.returning})


class Verdict(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    stale = "stale"  # older than the last applied report
    refused = "refused"  # would leave a terminal state, or go back after pickup


def judge(
    current: DeliveryStatus,
    incoming: DeliveryStatus,
    *,
    last_action_at: datetime | None,
    action_time: datetime,
    same_rider: bool = True,
) -> Verdict:
    if current in TERMINAL:
        return Verdict.duplicate if incoming == current else Verdict.refused
    if last_action_at is not None and action_time < last_action_at:
        return Verdict.stale
    if incoming == current:
        return Verdict.duplicate if same_rider or incoming not in BEFORE_PICKUP else Verdict.applied
    if RANK[incoming] < RANK[current] and not (current in BEFORE_PICKUP and incoming in BEFORE_PICKUP):
        return Verdict.refused
    return Verdict.applied
