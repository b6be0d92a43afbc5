"""Pure order rules: statuses and the one transition table, delivery range, opening hours, pricing. No I/O.

The transition table is the single source of truth for what may happen to an order: every use case and every
event handler moves an order with `next_status(action, status, mode)`, and the conditional UPDATE that applies the
move uses the same table's source states, so two racing requests cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from services.order.errors import InvalidTransition
from shared.geo import distance_m


class OrderStatus(StrEnum):
    pending_payment = "pending_payment"
    paid = "paid"
    accepted = "accepted"
    ready = "ready"
    ready_for_pickup = "ready_for_pickup"
    dispatching = "dispatching"
    in_delivery = "in_delivery"
    delivered = "delivered"
    shipped = "shipped"
    completed = "completed"
    cancelled = "cancelled"
    refunding = "refunding"
    refunded = "refunded"
    partially_refunded = "partially_refunded"


class FulfilmentMode(StrEnum):
    delivery = "delivery"  # a carrier or the merchant's own rider brings it
    pickup = "pickup"  # 自提: the customer collects it at the counter
    express = "express"  # 快递: the merchant ships it with a tracking number


class Action(StrEnum):
    pay = "pay"
    expire_unpaid = "expire_unpaid"
    customer_cancel = "customer_cancel"
    accept = "accept"
    reject = "reject"
    accept_timeout = "accept_timeout"
    merchant_cancel = "merchant_cancel"
    mark_ready = "mark_ready"
    ship = "ship"
    delivery_created = "delivery_created"
    delivery_picked_up = "delivery_picked_up"
    delivery_delivered = "delivery_delivered"
    delivery_ended = "delivery_ended"  # cancelled or returned by the carrier: back to ready, to re-dispatch
    confirm_receipt = "confirm_receipt"
    auto_complete = "auto_complete"
    pickup_redeemed = "pickup_redeemed"
    finish_redeemed = "finish_redeemed"  # the rider scanned the customer's finish code: proof of delivery
    pickup_reversed = "pickup_reversed"
    refund_settled = "refund_settled"  # the last refund of a cancelled order arrived
    partial_refund_settled = "partial_refund_settled"  # an after-sales refund of a served order, part of it
    full_refund_settled = "full_refund_settled"  # ... that brings the refunds to the order's total


S = OrderStatus
M = FulfilmentMode
ALL_MODES = frozenset(M)

# Statuses nothing moves an order out of.
TERMINAL = frozenset({S.cancelled, S.refunded})
# While any of these hold, the customer's money is with us and a cancellation must refund it.
PAID_STATUSES = frozenset({S.paid, S.accepted, S.ready, S.ready_for_pickup, S.dispatching})


@dataclass(frozen=True)
class Transition:
    sources: frozenset[OrderStatus]
    target: OrderStatus
    modes: frozenset[FulfilmentMode] = ALL_MODES


def _t(sources: set[OrderStatus], target: OrderStatus, modes: set[FulfilmentMode] | None = None) -> Transition:
    return Transition(frozenset(sources), target, frozenset(modes) if modes else ALL_MODES)


# (action, mode) → transition. An action absent for a mode is not allowed in that mode.
TRANSITIONS: dict[Action, list[Transition]] = {
    Action.pay: [_t({S.pending_payment}, S.paid)],
    Action.expire_unpaid: [_t({S.pending_payment}, S.cancelled)],
    Action.customer_cancel: [_t({S.pending_payment}, S.cancelled), _t({S.paid}, S.refunding)],
    Action.accept: [_t({S.paid}, S.accepted)],
    Action.reject: [_t({S.paid}, S.refunding)],
    Action.accept_timeout: [_t({S.paid}, S.refunding)],
    Action.merchant_cancel: [_t({S.accepted, S.ready, S.ready_for_pickup, S.dispatching}, S.refunding)],
    Action.mark_ready: [
        _t({S.accepted}, S.ready, {M.delivery, M.express}),
        _t({S.accepted}, S.ready_for_pickup, {M.pickup}),
    ],
    Action.ship: [_t({S.accepted, S.ready}, S.shipped, {M.express})],
    Action.delivery_created: [_t({S.accepted, S.ready}, S.dispatching, {M.delivery})],
    Action.delivery_picked_up: [_t({S.accepted, S.ready, S.dispatching}, S.in_delivery, {M.delivery})],
    Action.delivery_delivered: [_t({S.accepted, S.ready, S.dispatching, S.in_delivery}, S.delivered, {M.delivery})],
    Action.delivery_ended: [_t({S.dispatching, S.in_delivery}, S.ready, {M.delivery})],
    Action.confirm_receipt: [_t({S.delivered}, S.completed, {M.delivery}), _t({S.shipped}, S.completed, {M.express})],
    Action.auto_complete: [_t({S.delivered}, S.completed, {M.delivery}), _t({S.shipped}, S.completed, {M.express})],
    Action.pickup_redeemed: [_t({S.ready_for_pickup, S.accepted}, S.completed, {M.pickup})],
    Action.finish_redeemed: [_t({S.delivered}, S.completed, {M.delivery})],
    Action.pickup_reversed: [_t({S.completed}, S.ready_for_pickup, {M.pickup})],
    Action.refund_settled: [_t({S.refunding}, S.refunded)],
    Action.partial_refund_settled: [_t({S.completed, S.delivered, S.shipped}, S.partially_refunded)],
    Action.full_refund_settled: [_t({S.completed, S.delivered, S.shipped, S.partially_refunded}, S.refunded)],
}


def next_status(action: Action, status: OrderStatus, mode: FulfilmentMode) -> OrderStatus:
    """The status `action` moves an order to, or InvalidTransition (a 409) when it may not happen now."""
    for transition in TRANSITIONS[action]:
        if mode in transition.modes and status in transition.sources:
            return transition.target
    raise InvalidTransition(
        f"Cannot {action.value.replace('_', ' ')} an order that is {status.value} ({mode.value})",
        action=action.value,
        status=status.value,
    )


def refund_action(status: OrderStatus, refunded_fen: int, total_fen: int) -> Action | None:
    """The move a settled refund makes: a cancelled order is done; a served one is (partially) refunded. None when
    the status stays (a further partial refund, or a refund of an order in no refundable status)."""
    if status is S.refunding:
        return Action.refund_settled
    if refunded_fen >= total_fen:
        action = Action.full_refund_settled
    elif status is S.partially_refunded:
        return None
    else:
        action = Action.partial_refund_settled
    return action if any(status in t.sources for t in TRANSITIONS[action]) else None


# --- geography --------------------------------------------------------------------------------------------------


def point_in_polygon(lat: float, lng: float, polygon: list[list[float]]) -> bool:
    """Ray casting over [lat, lng] vertices; the polygon is closed implicitly."""
    inside = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        lat_i, lng_i = polygon[i]
        lat_j, lng_j = polygon[j]
        if (lng_i > lng) != (lng_j > lng) and lat < (lat_j - lat_i) * (lng - lng_i) / (lng_j - lng_i) + lat_i:
            inside = not inside
        j = i
    return inside


def covers(store: StoreRules, lat: float, lng: float) -> bool:
    if store.range_polygon:
        return point_in_polygon(lat, lng, store.range_polygon)
    return distance_m(store.lat, store.lng, lat, lng) <= (store.range_radius_m or 0)


def range_reach_m(lat: float, lng: float, radius_m: int | None, polygon: list[list[float]] | None) -> int:
    """The farthest any covered point can be from the store: a prefilter for nearby searches."""
    if polygon:
        return max(distance_m(lat, lng, p[0], p[1]) for p in polygon)
    return radius_m or 0


# --- opening hours --------------------------------------------------------------------------------------------


def is_open(opening_hours: list[dict[str, Any]], timezone: str, now: datetime) -> bool:
    """Opening hours are `{"weekdays": [1..7], "open": "HH:MM", "close": "HH:MM"}` in the store's zone (ISO
    weekdays, Monday = 1). A close at or before the open runs past midnight; an empty list means always open."""
    if not opening_hours:
        return True
    local = now.astimezone(ZoneInfo(timezone))
    today, clock = local.isoweekday(), local.time()
    yesterday = 7 if today == 1 else today - 1
    for period in opening_hours:
        opens, closes = time.fromisoformat(period["open"]), time.fromisoformat(period["close"])
        days = period.get("weekdays") or [1, 2, 3, 4, 5, 6, 7]
        if opens < closes:
            if today in days and opens <= clock < closes:
                return True
        elif (today in days and clock >= opens) or (yesterday in days and clock < closes):
            return True
    return False


# --- pricing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreRules:
    """What placing an order checks and prices against; built from the store row."""

    lat: float
    lng: float
    timezone: str
    opening_hours: list[dict[str, Any]]
    range_radius_m: int | None
    range_polygon: list[list[float]] | None
    min_order_fen: int
    delivery_base_fen: int
    delivery_tiers: list[dict[str, int]]  # [{"above_m": 3000, "add_fen": 200}, ...]
    free_delivery_above_fen: int | None
    fulfilment_modes: list[str]


def delivery_fee_fen(rules: StoreRules, distance: int, items_fen: int) -> int:
    """Base fee plus every distance tier the trip passes; free at or above the store's threshold."""
    if rules.free_delivery_above_fen is not None and items_fen >= rules.free_delivery_above_fen:
        return 0
    return rules.delivery_base_fen + sum(t["add_fen"] for t in rules.delivery_tiers if distance > t["above_m"])
