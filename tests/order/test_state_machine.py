"""The order state machine, driven by a table written out here independently of the service's own: every allowed
transition works, every other is a 409, both in the domain and through the HTTP routes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from services.order.domain import Action, FulfilmentMode, OrderStatus, next_status
from services.order.errors import InvalidTransition
from tests.order.conftest import CUSTOMER, MERCHANT, OrderHarness

S, A = OrderStatus, Action
D, P, E = FulfilmentMode.delivery, FulfilmentMode.pickup, FulfilmentMode.express
ALL = (D, P, E)

# (action, from status, modes) → to status. Anything not listed is refused.
ALLOWED: list[tuple[Action, OrderStatus, tuple[FulfilmentMode, ...], OrderStatus]] = [
    (A.pay, S.pending_payment, ALL, S.paid),
    (A.expire_unpaid, S.pending_payment, ALL, S.cancelled),
    (A.customer_cancel, S.pending_payment, ALL, S.cancelled),
    (A.customer_cancel, S.paid, ALL, S.refunding),
    (A.accept, S.paid, ALL, S.accepted),
    (A.reject, S.paid, ALL, S.refunding),
    (A.accept_timeout, S.paid, ALL, S.refunding),
    *[(A.merchant_cancel, s, ALL, S.refunding) for s in (S.accepted, S.ready, S.ready_for_pickup, S.dispatching)],
    (A.mark_ready, S.accepted, (D, E), S.ready),
    (A.mark_ready, S.accepted, (P,), S.ready_for_pickup),
    (A.ship, S.accepted, (E,), S.shipped),
    (A.ship, S.ready, (E,), S.shipped),
    (A.delivery_created, S.accepted, (D,), S.dispatching),
    (A.delivery_created, S.ready, (D,), S.dispatching),
    *[(A.delivery_picked_up, s, (D,), S.in_delivery) for s in (S.accepted, S.ready, S.dispatching)],
    *[(A.delivery_delivered, s, (D,), S.delivered) for s in (S.accepted, S.ready, S.dispatching, S.in_delivery)],
    (A.delivery_ended, S.dispatching, (D,), S.ready),
    (A.delivery_ended, S.in_delivery, (D,), S.ready),
    *[(a, S.delivered, (D,), S.completed) for a in (A.confirm_receipt, A.auto_complete)],
    *[(a, S.shipped, (E,), S.completed) for a in (A.confirm_receipt, A.auto_complete)],
    (A.pickup_redeemed, S.ready_for_pickup, (P,), S.completed),
    (A.pickup_redeemed, S.accepted, (P,), S.completed),
    (A.finish_redeemed, S.delivered, (D,), S.completed),
    (A.pickup_reversed, S.completed, (P,), S.ready_for_pickup),
    (A.refund_settled, S.refunding, ALL, S.refunded),
    (A.partial_refund_settled, S.completed, ALL, S.partially_refunded),
    (A.partial_refund_settled, S.delivered, ALL, S.partially_refunded),
    (A.partial_refund_settled, S.shipped, ALL, S.partially_refunded),
    *[(A.full_refund_settled, s, ALL, S.refunded) for s in (S.completed, S.delivered, S.shipped, S.partially_refunded)],
]  # fmt: skip
EXPECTED = {(a, s, m): to for a, s, modes, to in ALLOWED for m in modes}


@pytest.mark.parametrize(("action", "mode"), list(itertools.product(Action, FulfilmentMode)))
def test_every_transition_of_the_table_and_no_other(action: Action, mode: FulfilmentMode) -> None:
    for status in OrderStatus:
        expected = EXPECTED.get((action, status, mode))
        if expected is None:
            with pytest.raises(InvalidTransition):
                next_status(action, status, mode)
        else:
            assert next_status(action, status, mode) is expected, (action, status, mode)


def test_nothing_leaves_a_terminal_status() -> None:
    for action, mode in itertools.product(Action, FulfilmentMode):
        for terminal in (S.cancelled, S.refunded):
            with pytest.raises(InvalidTransition):
                next_status(action, terminal, mode)


# The HTTP routes that move an order, with the caller and the action each stands for.
ROUTES = [
    ("accept", MERCHANT, A.accept, {}),
    ("reject", MERCHANT, A.reject, {"reason": "closing early"}),
    ("ready", MERCHANT, A.mark_ready, {}),
    ("ship", MERCHANT, A.ship, {"carrier": "SF", "tracking_no": "SF1234567890"}),
    ("cancel", CUSTOMER, A.customer_cancel, {"reason": "mistake"}),
    ("cancel", MERCHANT, A.merchant_cancel, {"reason": "out of beef"}),
    ("confirm-receipt", CUSTOMER, A.confirm_receipt, {}),
]


async def test_every_route_moves_exactly_the_orders_the_table_allows(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = (await h.product(stock=10_000))["skus"][0]["id"]
    orders = {(mode, status): (await h.place(sku, quantity=2, mode=mode.value))["id"] for mode in ALL for status in S}
    mismatches = []
    for (mode, status), order_id in orders.items():
        for path, caller, action, body in ROUTES:
            await h.sql("UPDATE customer_order SET status = :s WHERE id = :id", s=status.value, id=order_id)
            response = await h.act(order_id, path, headers=caller, **body)
            expected = EXPECTED.get((action, status, mode))
            want = (200, expected.value) if expected else (409, None)
            got = (response.status_code, response.json().get("status") if response.status_code == 200 else None)
            if got != want:
                mismatches.append((path, caller is CUSTOMER, mode.value, status.value, got, want))
            if response.status_code == 409:
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"] == "/problems/invalid-transition"
    assert mismatches == []


async def test_of_racing_accept_and_cancel_exactly_one_wins(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = (await h.product(stock=1000))["skus"][0]["id"]
    for _ in range(5):
        oid = (await h.paid_order(sku))["id"]
        accept, cancel = await asyncio.gather(
            h.act(oid, "accept"), h.act(oid, "cancel", headers=CUSTOMER, reason="too slow")
        )
        assert sorted([accept.status_code, cancel.status_code]) == [200, 409]
        final = (await h.order(oid))["status"]
        assert final == ("accepted" if accept.status_code == 200 else "refunding")
        moves = await h.sql("SELECT count(*) FROM order_status_change WHERE order_id = :id", id=oid)
        assert moves == [(3,)]  # placed, paid, and one of the two
