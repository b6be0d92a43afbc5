"""The public WeChat Pay notification endpoint cannot fill the disk: a refused notification keeps only its digest,
size and a bounded prefix, an oversized body is refused unread (413), and refused records are pruned on a schedule;
a handled notification stays whole."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from tests.order.conftest import OrderHarness


async def test_refused_notifications_are_kept_bounded_and_pruned(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    product = await h.product()
    order = await h.paid_order(str(product["skus"][0]["id"]))
    junk = ("{" + "x" * 30_000 + "}").encode()
    refused = await h.client.post("/v1/payments/wechatpay/callback", content=junk, headers={"Wechatpay-Nonce": "n"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "FAIL"
    huge = await h.client.post("/v1/payments/wechatpay/callback", content=b"{" + b" " * (64 * 1024) + b"}")
    assert huge.status_code == 413
    assert huge.json()["code"] == "FAIL"
    rows = await h.sql(
        "SELECT outcome, octet_length(body), body_sha256, body_size FROM payment_notification ORDER BY id"
    )
    applied, junk_row, huge_row = rows
    assert applied[0] == "applied"
    assert applied[1] == applied[3]  # handled: whole
    assert junk_row == ("rejected:" + junk_row[0].split(":", 1)[1], 2048, hashlib.sha256(junk).hexdigest(), len(junk))
    assert huge_row[0] == "rejected:too-large"
    assert huge_row[1] == 0
    h.clock.advance(timedelta(days=8))
    for _ in range(3):
        await h.timers.fire_due()
    outcomes = [row[0] for row in await h.sql("SELECT outcome FROM payment_notification")]
    assert "applied" in outcomes
    assert not [outcome for outcome in outcomes if outcome.startswith("rejected")]
    assert (await h.order(order["id"]))["id"] == order["id"]
