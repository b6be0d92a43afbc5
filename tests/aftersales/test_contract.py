"""The refund contract between the two services, model against view: what the aftersales service publishes fits
what the order service reads, field by field (the end-to-end proof is test_with_order_service.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.aftersales.cases import parse_cause, refund_cause
from services.aftersales.consumed import OrderRefundedView, RefundView
from services.aftersales.events import PUBLISHED, REFUND_REQUESTED, CaseLinePayload
from services.order.consumed import RefundRequestedView
from services.order.handlers import HOLD_CLOSERS
from services.order.refunds import aftersales_cause


def _case(**extra: object) -> dict[str, object]:
    return {
        "case_id": "as_1", "order_id": "o-1", "type": "cancel_request", "state": "refunding", "customer_id": "c",
        "merchant_id": "m", "store_id": "s", "reason_code": "too_slow", "asked_fen": 3800, "agreed_fen": 3800,
        "lines": [CaseLinePayload(sku_id="sku", quantity=1)], "deadline_at": None, "actor": "merchant:m", **extra,
    }  # fmt: skip


def test_a_refund_request_fits_the_order_services_view() -> None:
    published = PUBLISHED[REFUND_REQUESTED](**_case(amount_fen=3800, attempt=2, reason="售后退款")).model_dump(
        mode="json"
    )
    read = RefundRequestedView.model_validate(published)
    assert (read.case_id, read.order_id, read.type, read.amount_fen, read.attempt) == (
        "as_1", "o-1", "cancel_request", 3800, 2)  # fmt: skip


def test_both_sides_name_a_cases_refund_the_same_way() -> None:
    for attempt in (1, 2, 7):
        assert aftersales_cause("as_1", attempt) == refund_cause("as_1", attempt)
        assert parse_cause(aftersales_cause("as_1", attempt)) == ("as_1", attempt)
    assert parse_cause("merchant_cancel") is None


def test_the_events_that_close_the_order_services_hold_are_published() -> None:
    assert set(HOLD_CLOSERS) <= set(PUBLISHED)
    assert "aftersales.requested.v1" in PUBLISHED


def test_the_order_services_refund_outcome_fits_the_aftersales_view() -> None:
    snapshot = {
        "order_id": "o-1", "status": "partially_refunded", "fulfilment_mode": "delivery", "customer_id": "c",
        "merchant_id": "m", "store": {"id": "s", "name": "S"}, "address": None, "contact": {}, "note": None,
        "items": [{"sku_id": "sku", "product_id": "p", "name": "面", "price_fen": 1500, "quantity": 2}],
        "amounts": {"items_fen": 3000, "delivery_fee_fen": 500, "total_fen": 3500, "refunded_fen": 800},
        "placed_at": datetime.now(UTC).isoformat(), "paid_at": datetime.now(UTC).isoformat(), "accepted_at": None,
        "refund": {"out_refund_no": "o-1Rabc", "cause": "aftersales:as_1", "amount_fen": 800},
    }  # fmt: skip
    read = OrderRefundedView.model_validate(snapshot)
    assert read.refund == RefundView(cause="aftersales:as_1", amount_fen=800)
