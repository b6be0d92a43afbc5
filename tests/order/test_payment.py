"""WeChat Pay through the sandbox: signed prepay, signed and encrypted notifications, refunds exactly once."""

from __future__ import annotations

import json

from services.order.payment.wechatpay import encrypt_resource, load_private_key, signed_headers
from tests.order.conftest import CUSTOMER, OrderHarness, PayKeys
from tests.support import eventually


async def _ready(h: OrderHarness) -> str:
    await h.store()
    product = await h.product()
    return str(product["skus"][0]["id"])


async def test_a_customer_pays_and_the_signed_notification_makes_the_order_paid(harness: OrderHarness) -> None:
    h = harness
    sku = await _ready(h)
    order = await h.place(sku, quantity=2)
    assert order["status"] == "pending_payment"
    assert order["total_fen"] == 3000 + 600  # 2 x 15.00, base 5.00 + 1.00 for the 1.1 km trip

    payment = await h.client.post(f"/v1/orders/{order['id']}/payment", headers=CUSTOMER)
    assert payment.status_code == 200
    params = payment.json()["pay_params"]
    assert params["package"] == f"prepay_id={payment.json()['prepay_id']}"
    assert params["signType"] == "RSA"
    assert params["paySign"]

    paid = await h.pay(order["id"])
    assert paid["status"] == "paid"
    assert await h.events(order["id"]) == ["order.placed.v1", "order.paid.v1"]
    [(outcome, event_type)] = await h.sql("SELECT outcome, event_type FROM payment_notification")
    assert (outcome, event_type) == ("applied", "TRANSACTION.SUCCESS")


async def test_a_replayed_notification_has_one_effect(harness: OrderHarness) -> None:
    h = harness
    sku = await _ready(h)
    order = await h.paid_order(sku)
    [notification] = (await h.sandbox.get("/sandbox/notifications")).json()
    for _ in range(3):
        assert (await h.sandbox.post(f"/sandbox/notifications/{notification['id']}/resend")).status_code == 202

    async def four_received() -> bool:
        return len(await h.sql("SELECT 1 FROM payment_notification")) == 4

    await eventually(four_received)
    outcomes = [row[0] for row in await h.sql("SELECT outcome FROM payment_notification ORDER BY id")]
    assert outcomes == ["applied", "duplicate", "duplicate", "duplicate"]
    assert await h.events(order["id"]) == ["order.placed.v1", "order.paid.v1"]


def _notification(keys: PayKeys, resource: dict[str, object], event_type: str = "TRANSACTION.SUCCESS") -> str:
    return json.dumps(
        {
            "id": "EV-test",
            "create_time": "2026-11-18T12:00:00+08:00",
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": encrypt_resource(keys.apiv3_key, resource, "transaction"),
        }
    )


def _transaction(order_id: str, total: int) -> dict[str, object]:
    return {
        "appid": "wx-sandbox-app",
        "mchid": "1900000001",
        "out_trade_no": order_id,
        "transaction_id": "4200000000000000000001",
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "success_time": "2026-11-18T12:00:05+08:00",
        "payer": {"openid": "openid-alice"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
    }


async def test_a_forged_signature_is_refused_and_changes_nothing(harness: OrderHarness, pay_keys: PayKeys) -> None:
    h = harness
    sku = await _ready(h)
    order = await h.place(sku)
    await h.client.post(f"/v1/orders/{order['id']}/payment", headers=CUSTOMER)
    body = _notification(pay_keys, _transaction(order["id"], order["total_fen"]))
    # Signed with the merchant's key instead of the platform's: well formed, but not WeChat's signature.
    forged = signed_headers(load_private_key(pay_keys.merchant_private), "PUB_KEY_ID_SANDBOX", body)
    response = await h.client.post("/v1/payments/wechatpay/callback", content=body, headers=forged)
    assert response.status_code == 400
    assert response.json()["code"] == "FAIL"
    tampered = signed_headers(load_private_key(pay_keys.platform_private), "PUB_KEY_ID_SANDBOX", body)
    response = await h.client.post(
        "/v1/payments/wechatpay/callback", content=body.replace("EV-test", "EV-tamp"), headers=tampered
    )
    assert response.status_code == 400
    assert (await h.order(order["id"]))["status"] == "pending_payment"
    outcomes = [row[0] for row in await h.sql("SELECT outcome FROM payment_notification ORDER BY id")]
    assert len(outcomes) == 2
    assert all(o.startswith("rejected:") for o in outcomes)


async def test_an_amount_mismatch_is_refused(harness: OrderHarness, pay_keys: PayKeys) -> None:
    h = harness
    sku = await _ready(h)
    order = await h.place(sku)
    await h.client.post(f"/v1/orders/{order['id']}/payment", headers=CUSTOMER)
    body = _notification(pay_keys, _transaction(order["id"], 1))
    headers = signed_headers(load_private_key(pay_keys.platform_private), "PUB_KEY_ID_SANDBOX", body)
    response = await h.client.post("/v1/payments/wechatpay/callback", content=body, headers=headers)
    assert response.status_code == 400
    assert "1 fen" in response.json()["message"]
    assert (await h.order(order["id"]))["status"] == "pending_payment"
    assert await h.sql("SELECT outcome FROM payment_notification") == [("rejected:amount-mismatch",)]
    assert await h.sql("SELECT status, transaction_id FROM payment") == [("created", None)]


async def test_a_rejected_order_is_refunded_exactly_once(harness: OrderHarness) -> None:
    h = harness
    sku = await _ready(h)
    order = await h.paid_order(sku)
    response = await h.act(order["id"], "reject", reason="售罄")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "refunding"
    # The refund is submitted by its timer; firing timers again (a retry after a crash) submits nothing new.
    for _ in range(3):
        await h.timers.fire_due()

    async def refunded() -> bool:
        return (await h.order(order["id"]))["status"] == "refunded"

    await eventually(refunded)
    refunds = (await h.client.get(f"/v1/orders/{order['id']}/refunds", headers=CUSTOMER)).json()
    assert [(r["cause"], r["amount_fen"], r["status"]) for r in refunds] == [
        ("reject", order["total_fen"], "succeeded")
    ]
    refund_notes = [
        n for n in (await h.sandbox.get("/sandbox/notifications")).json() if n["body"]["event_type"] == "REFUND.SUCCESS"
    ]
    assert len(refund_notes) == 1
    await h.sandbox.post(f"/sandbox/notifications/{refund_notes[0]['id']}/resend")

    async def replay_seen() -> bool:
        return len(await h.sql("SELECT 1 FROM payment_notification WHERE event_type = 'REFUND.SUCCESS'")) == 2

    await eventually(replay_seen)
    final = await h.order(order["id"])
    assert (final["status"], final["refunded_fen"]) == ("refunded", order["total_fen"])
    assert await h.events(order["id"]) == [
        "order.placed.v1", "order.paid.v1", "order.rejected.v1", "order.cancelled.v1", "order.refunded.v1"
    ]  # fmt: skip
    assert await h.sql("SELECT stock FROM sku") == [(100,)]  # the reserved stock went back


async def _cancelled_with_prepay(h: OrderHarness) -> tuple[dict[str, object], str]:
    sku = await _ready(h)
    order = await h.place(sku)
    payment = (await h.client.post(f"/v1/orders/{order['id']}/payment", headers=CUSTOMER)).json()
    cancelled = await h.act(order["id"], "cancel", headers=CUSTOMER, reason="changed my mind")
    assert cancelled.json()["status"] == "cancelled"
    return order, str(payment["prepay_id"])


async def test_a_cancelled_orders_prepay_is_closed(harness: OrderHarness) -> None:
    h = harness
    _, prepay_id = await _cancelled_with_prepay(h)
    assert await h.timers.fire_due() == 1
    assert await h.sql("SELECT status FROM payment") == [("closed",)]
    refused = await h.sandbox.post("/sandbox/pay", json={"prepay_id": prepay_id})
    assert (refused.status_code, refused.json()["code"]) == (400, "ORDER_CLOSED")


async def test_a_payment_racing_the_cancellation_is_refunded(harness: OrderHarness) -> None:
    h = harness
    order, prepay_id = await _cancelled_with_prepay(h)
    # The customer pays before the close reaches WeChat Pay: the close is refused, the payment refunded.
    await h.sandbox.post("/sandbox/pay", json={"prepay_id": prepay_id})

    async def late_refund_requested() -> bool:
        return len(await h.sql("SELECT 1 FROM refund WHERE cause = 'late_payment'")) == 1

    await eventually(late_refund_requested)
    assert await h.timers.fire_due() == 2  # the close (refused: ORDERPAID) and the refund

    async def settled() -> bool:
        return await h.sql("SELECT status FROM refund") == [("succeeded",)]

    await eventually(settled)
    assert (await h.order(order["id"]))["status"] == "cancelled"
    assert await h.sql("SELECT status FROM payment") == [("paid",)]
