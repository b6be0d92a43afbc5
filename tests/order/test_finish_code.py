"""A finish code is proof of a delivery the rider picked up: it completes an order in delivery (or delivered), and
never moves one straight from `accepted` or `dispatching`; one that arrives before dispatch's pickup event (another
topic) is kept, and the order completes when its delivery is delivered."""

from __future__ import annotations

from tests.order.conftest import OrderHarness


async def _accepted(h: OrderHarness, sku: str) -> str:
    order_id = str((await h.paid_order(sku))["id"])
    await h.act(order_id, "accept")
    return order_id


async def test_a_finish_code_completes_only_an_order_whose_delivery_was_picked_up(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = str((await h.product(stock=20))["skus"][0]["id"])
    picked_up = await _accepted(h, sku)
    await h.deliver("delivery.picked_up.v1", picked_up, carrier="own_fleet")
    await h.deliver("code.redeemed.v1", picked_up, kind="finish", code_id="c-1")
    done = await h.order(picked_up)
    assert (done["status"], done["delivered_at"] is not None) == ("completed", True)

    early = await _accepted(h, sku)
    await h.deliver("code.redeemed.v1", early, kind="finish", code_id="c-2")
    assert (await h.order(early))["status"] == "accepted"
    await h.act(early, "ready")
    await h.deliver("delivery.created.v1", early, carrier="own_fleet")
    assert (await h.order(early))["status"] == "dispatching"
    await h.deliver("delivery.picked_up.v1", early, carrier="own_fleet")
    assert (await h.order(early))["status"] == "in_delivery"
    await h.deliver("delivery.delivered.v1", early, carrier="own_fleet")
    assert (await h.order(early))["status"] == "completed"
    assert (await h.events(early))[-1] == "order.completed.v1"
