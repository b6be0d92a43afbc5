"""Events the order service has no business with are skipped by its consumer before any transaction: no inbox
row, no warning."""

from __future__ import annotations

import logging

import pytest

from shared.events.envelope import new_event
from tests.order.conftest import OrderHarness


async def test_a_vouchers_redemption_and_reversal_are_skipped(
    harness: OrderHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    data = {"code_id": "c-9", "kind": "voucher", "order_id": None, "merchant_id": "m-1", "store_id": "s-1"}
    voucher_events = [
        new_event(event_type, source="redemption", subject="c-9", data=data, clock=h.clock)
        for event_type in ("code.redeemed.v1", "code.reversed.v1")
    ]
    with caplog.at_level(logging.INFO):
        for event in voucher_events:
            await h.redeliver(event)
    assert await h.sql("SELECT count(*) FROM inbox") == [(0,)]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # An order's code is still the order's business.
    await h.deliver("code.redeemed.v1", "o-unknown", kind="pickup", code_id="c-1")
    assert await h.sql("SELECT type FROM inbox") == [("code.redeemed.v1",)]
