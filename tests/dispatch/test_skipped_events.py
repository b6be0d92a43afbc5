"""Dispatch hands a delivery over on a finish code's redemption only; its consumer skips every other code's
before any transaction (no inbox row)."""

from __future__ import annotations

from shared.events.envelope import new_event
from tests.dispatch.conftest import DispatchHarness


async def test_redemptions_of_pickup_codes_and_vouchers_are_skipped(dispatch: DispatchHarness) -> None:
    d = dispatch
    for kind, order_id in (("pickup", "o-1"), ("voucher", None)):
        data = {"code_id": f"c-{kind}", "kind": kind, "order_id": order_id, "redeemed_by": "merchant:staff-1"}
        await d.feed.deliver(
            new_event(
                "code.redeemed.v1", source="redemption", subject=order_id or f"c-{kind}", data=data, clock=d.clock
            )
        )
    assert await d.sql("SELECT count(*) FROM inbox") == [(0,)]
    finish = {"code_id": "c-finish", "kind": "finish", "order_id": "o-2", "redeemed_by": "rider:rider-1"}
    await d.feed.deliver(new_event("code.redeemed.v1", source="redemption", subject="o-2", data=finish, clock=d.clock))
    assert await d.sql("SELECT type FROM inbox") == [("code.redeemed.v1",)]
