"""A move writes the order's row once, in its conditional UPDATE, and records the status change in the same statement
(the flush after it used to write the status again, and the change was a statement of its own); a delivery event that
moves the order writes what the order shows of the delivery in that same UPDATE."""

from __future__ import annotations

from tests.order.conftest import CUSTOMER, OrderHarness
from tests.order.test_deadlines_and_events import _sku
from tests.support import statements


def _order_updates(sent: list[str]) -> list[str]:
    return [" ".join(statement.split()) for statement in sent if "UPDATE customer_order" in statement]


def _conditional(update: str) -> bool:
    """The move's own statement: the new status, on the condition that the status is still the one read, and the
    change recorded when it matched."""
    return (
        "SET status=" in update
        and "AND customer_order.status = " in update
        and "INSERT INTO order_status_change" in update
    )


async def test_a_move_by_request_or_by_event_is_one_update_of_the_order(harness: OrderHarness) -> None:
    h = harness
    oid = (await h.paid_order(await _sku(h)))["id"]
    with statements(h.sessionmaker) as sent:
        accepted = await h.act(oid, "accept")
    assert accepted.status_code == 200, accepted.text
    [move] = _order_updates(sent)
    assert _conditional(move)
    assert (await h.act(oid, "ready")).json()["status"] == "ready"

    with statements(h.sessionmaker) as sent:
        await h.deliver("delivery.created.v1", oid, delivery_id="d-1", carrier="dada")
    [move] = _order_updates(sent)  # what the order shows of its delivery is written with the move
    assert _conditional(move)
    assert "delivery=" in move

    shown = await h.order(oid, headers=CUSTOMER)
    assert (shown["status"], shown["delivery"]["delivery_id"]) == ("dispatching", "d-1")
    assert shown["accepted_at"] is not None
    assert await h.events(oid) == ["order.placed.v1", "order.paid.v1", "order.accepted.v1", "order.ready.v1"]
    accepted_event = (await h.outbox("order.accepted.v1"))[0]
    assert accepted_event["data"]["status"] == "accepted"
