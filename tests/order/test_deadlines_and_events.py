"""Deadlines fire by moving the clock; other services' events move the order once, never out of a terminal state."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.order.conftest import CUSTOMER, MERCHANT, OrderHarness
from tests.support import eventually


async def _sku(h: OrderHarness, **store: object) -> str:
    await h.store(**store)
    return str((await h.product(stock=20))["skus"][0]["id"])


async def test_an_unpaid_order_is_cancelled_after_15_minutes_and_its_stock_released(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h)
    order = await h.place(sku, quantity=3)
    assert await h.sql("SELECT stock FROM sku") == [(17,)]
    h.clock.advance(timedelta(minutes=14, seconds=59))
    assert await h.timers.fire_due() == 0
    h.clock.advance(timedelta(seconds=1))
    assert await h.timers.fire_due() == 1
    cancelled = await h.order(order["id"])
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "unpaid")
    assert await h.sql("SELECT stock FROM sku") == [(20,)]
    assert await h.events(order["id"]) == ["order.placed.v1", "order.cancelled.v1"]
    assert await h.sql("SELECT count(*) FROM refund") == [(0,)]


async def test_a_paid_order_not_accepted_in_time_is_cancelled_and_refunded(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h, accept_limit_minutes=10)
    order = await h.paid_order(sku)
    assert datetime.fromisoformat(order["accept_by"]) == h.clock.now() + timedelta(minutes=10)
    listed = (await h.client.get("/v1/orders", headers=MERCHANT)).json()["items"]
    assert [o["accept_by"] for o in listed] == [order["accept_by"]]
    h.clock.advance(timedelta(minutes=9))
    assert await h.timers.fire_due() == 0
    h.clock.advance(timedelta(minutes=1))
    assert await h.timers.fire_due() == 1  # the accept deadline: cancels and stages the refund
    refunding = await h.order(order["id"])
    assert (refunding["status"], refunding["accept_by"]) == ("refunding", None)
    assert await h.timers.fire_due() == 1  # the refund goes to WeChat Pay

    async def refunded() -> bool:
        return (await h.order(order["id"]))["status"] == "refunded"

    await eventually(refunded)
    assert await h.sql("SELECT cause, status FROM refund") == [("accept_timeout", "succeeded")]


async def test_auto_accept_skips_the_merchant(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h, auto_accept=True)
    order = await h.paid_order(sku)
    assert order["status"] == "accepted"
    assert await h.events(order["id"]) == ["order.placed.v1", "order.paid.v1", "order.accepted.v1"]


async def test_a_delivery_moves_the_order_and_it_completes_by_itself(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h)
    order = await h.paid_order(sku)
    oid = order["id"]
    accepted = await h.act(oid, "accept")
    assert (accepted.status_code, accepted.json()["accept_by"]) == (200, None)
    assert (await h.act(oid, "ready")).json()["status"] == "ready"
    created = await h.deliver("delivery.created.v1", oid, delivery_id="d-1", carrier="dada")
    await h.redeliver(created)  # a duplicate: the inbox drops it
    assert (await h.order(oid))["status"] == "dispatching"
    await h.deliver("delivery.rider_assigned.v1", oid, carrier="dada", rider={"name": "王师傅", "phone": "139"})
    await h.deliver("delivery.picked_up.v1", oid, carrier="dada")
    # What the order shows of its delivery is written with the move, and alone when the event moves nothing.
    assert (await h.order(oid))["status"] == "in_delivery"
    assert (await h.order(oid))["delivery"]["status"] == "picked_up"
    await h.deliver("delivery.delivering.v1", oid, carrier="dada")
    assert (await h.order(oid))["delivery"]["status"] == "delivering"
    delivered = await h.deliver("delivery.delivered.v1", oid, carrier="dada")
    shown = await h.order(oid, headers=CUSTOMER)
    assert (shown["status"], shown["delivery"]["status"], shown["delivery"]["carrier"]) == (
        "delivered", "delivered", "dada"
    )  # fmt: skip
    assert shown["delivery"]["rider"] == {"name": "王师傅", "phone": "139"}
    assert datetime.fromisoformat(shown["auto_complete_by"]) == h.clock.now() + timedelta(hours=24)
    h.clock.advance(timedelta(hours=24))
    assert await h.timers.fire_due() == 1
    completed = await h.order(oid)
    assert (completed["status"], completed["auto_complete_by"]) == ("completed", None)
    await h.deliver("delivery.cancelled.v1", oid, carrier="dada")  # late and out of order: ignored
    await h.redeliver(delivered)
    assert (await h.order(oid))["status"] == "completed"
    history = (await h.client.get(f"/v1/orders/{oid}/history", headers=CUSTOMER)).json()
    assert [c["to_status"] for c in history] == [
        "pending_payment", "paid", "accepted", "ready", "dispatching", "in_delivery", "delivered", "completed"
    ]  # fmt: skip
    assert (await h.events(oid)).count("order.completed.v1") == 1


async def test_a_cancelled_delivery_sends_the_order_back_to_ready(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h)
    oid = (await h.paid_order(sku))["id"]
    await h.act(oid, "accept")
    await h.deliver("delivery.created.v1", oid, carrier="sf")
    await h.deliver("delivery.cancelled.v1", oid, carrier="sf", reason="no rider")
    assert (await h.order(oid))["status"] == "ready"
    await h.deliver("delivery.created.v1", oid, carrier="dada")
    assert (await h.order(oid))["status"] == "dispatching"


async def test_codes_complete_pickup_and_delivery_and_a_reversal_reopens(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h)
    pickup = (await h.paid_order(sku, mode="pickup"))["id"]
    await h.act(pickup, "accept")
    assert (await h.act(pickup, "ready")).json()["status"] == "ready_for_pickup"
    await h.deliver("code.redeemed.v1", pickup, kind="pickup", code_id="c-1")
    assert (await h.order(pickup))["status"] == "completed"
    await h.deliver("code.reversed.v1", pickup, kind="pickup", code_id="c-1")
    assert (await h.order(pickup))["status"] == "ready_for_pickup"
    assert (await h.events(pickup))[-1] == "order.reopened.v1"

    own_fleet = (await h.paid_order(sku))["id"]
    await h.act(own_fleet, "accept")
    await h.deliver("delivery.picked_up.v1", own_fleet, carrier="own_fleet")
    await h.deliver("code.redeemed.v1", own_fleet, kind="finish", code_id="c-2")
    done = await h.order(own_fleet)
    assert done["status"] == "completed"
    assert done["delivered_at"] is not None


async def test_express_shipping_is_blocked_by_open_aftersales_and_changed_skus(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    product = await h.product(stock=20)
    sku = product["skus"][0]["id"]
    oid = (await h.paid_order(sku, mode="express"))["id"]
    await h.act(oid, "accept")
    ship = {"carrier": "SF", "tracking_no": "SF1234567890"}
    await h.deliver("aftersales.requested.v1", oid, case_id="as-1")
    blocked = await h.act(oid, "ship", **ship)
    assert (blocked.status_code, blocked.json()["reason"]) == (409, "aftersales-open")
    await h.deliver("aftersales.closed.v1", oid, case_id="as-1")
    await h.client.patch(f"/v1/products/{product['id']}/skus/{sku}", json={"stock": 50}, headers=MERCHANT)
    # Stock moves do not change the SKU; a new price does.
    await h.client.patch(f"/v1/products/{product['id']}/skus/{sku}", json={"price_fen": 1600}, headers=MERCHANT)
    blocked = await h.act(oid, "ship", **ship)
    assert (blocked.status_code, blocked.json()["reason"]) == (409, "sku-changed")
    fine = (await h.paid_order(sku, mode="express"))["id"]
    await h.act(fine, "accept")
    shipped = await h.act(fine, "ship", **ship)
    assert shipped.json()["status"] == "shipped"
    assert shipped.json()["express_tracking_no"] == "SF1234567890"
    h.clock.advance(timedelta(hours=24))
    await h.timers.fire_due()
    assert (await h.order(fine))["status"] == "completed"


async def test_an_aftersales_refund_request_refunds_part_of_a_completed_order_once(harness: OrderHarness) -> None:
    h = harness
    sku = await _sku(h)
    oid = (await h.paid_order(sku))["id"]
    await h.act(oid, "accept")
    await h.deliver("delivery.delivered.v1", oid, carrier="dada")
    await h.act(oid, "confirm-receipt", headers=CUSTOMER)
    await h.deliver("aftersales.approved.v1", oid, case_id="as-9", agreed_fen=1000)  # an approval refunds nothing
    asked = await h.deliver(
        "aftersales.refund_requested.v1", oid, case_id="as-9", amount_fen=1000, attempt=1, type="refund_only",
        reason="少了一份",
    )  # fmt: skip
    await h.redeliver(asked)
    await h.deliver("aftersales.refund_requested.v1", oid, case_id="as-9", amount_fen=1000, attempt=1,
                    type="refund_only")  # fmt: skip  # a new event, the same case and attempt
    await h.timers.fire_due()

    async def partially_refunded() -> bool:
        return (await h.order(oid))["status"] == "partially_refunded"

    await eventually(partially_refunded)
    assert (await h.order(oid))["refunded_fen"] == 1000
    assert await h.sql("SELECT cause, amount_fen, status FROM refund") == [("aftersales:as-9", 1000, "succeeded")]
