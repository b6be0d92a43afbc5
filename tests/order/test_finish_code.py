"""A finish code is proof of a delivery the rider picked up: it completes an order in delivery (or delivered), and
never moves one straight from `accepted` or `dispatching`."""

from __future__ import annotations

from tests.order.conftest import OrderHarness


async def test_a_finish_code_completes_only_an_order_whose_delivery_was_picked_up(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = str((await h.product(stock=20))["skus"][0]["id"])
    order_id = (await h.paid_order(sku))["id"]
    await h.act(order_id, "accept")
    await h.deliver("code.redeemed.v1", order_id, kind="finish", code_id="c-1")
    assert (await h.order(order_id))["status"] == "accepted"
    await h.act(order_id, "ready")
    await h.deliver("delivery.created.v1", order_id, carrier="own_fleet")
    await h.deliver("code.redeemed.v1", order_id, kind="finish", code_id="c-1")
    assert (await h.order(order_id))["status"] == "dispatching"
    await h.deliver("delivery.picked_up.v1", order_id, carrier="own_fleet")
    await h.deliver("code.redeemed.v1", order_id, kind="finish", code_id="c-1")
    done = await h.order(order_id)
    assert (done["status"], done["delivered_at"] is not None) == ("completed", True)
    assert (await h.events(order_id))[-1] == "order.completed.v1"
