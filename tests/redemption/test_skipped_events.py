"""Order events that issue or end no code are skipped by the redemption service's consumer before any
transaction (no inbox row): a delivery order's acceptance, a pickup order's payment, a partial refund."""

from __future__ import annotations

from tests.redemption.conftest import RedemptionHarness


async def test_order_events_that_issue_or_end_no_code_are_skipped(redemption: RedemptionHarness) -> None:
    r = redemption
    await r.order_paid("o-1", mode="pickup", accepted=False)  # a pickup code waits for the acceptance
    await r.order_event(
        "order.accepted.v1",
        "o-2",
        fulfilment_mode="delivery",
        merchant_id="m-1",
        customer_id="c-1",
        store={"id": "s-1"},
    )  # its finish code came with payment
    await r.order_event("order.refunded.v1", "o-3", status="partially_refunded")
    assert await r.sql("SELECT count(*) FROM inbox") == [(0,)]
    code = await r.order_paid("o-1")  # accepted now: the pickup code
    assert code["kind"] == "pickup"
    assert await r.sql("SELECT type FROM inbox ORDER BY handled_at") == [("order.accepted.v1",)]


async def test_the_order_events_consumed_still_act(redemption: RedemptionHarness) -> None:
    r = redemption
    await r.order_paid("o-1", mode="delivery", accepted=False)
    await r.order_event("order.refunded.v1", "o-1", status="refunded")
    assert await r.sql("SELECT kind, status FROM code") == [("finish", "revoked")]
