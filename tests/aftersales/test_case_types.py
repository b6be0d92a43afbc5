"""Each kind of case end to end through the service's HTTP API and its events: refund only, return and refund
(refunded on receipt), exchange, negotiation, rejection and arbitration, cancel request, the customer's cancel."""

from __future__ import annotations

from tests.aftersales.conftest import CUSTOMER, MERCHANT, OPS, OTHER_CUSTOMER, OTHER_MERCHANT, PNG, AftersalesHarness


async def _upload(h: AftersalesHarness, headers: dict[str, str] = CUSTOMER, **params: str) -> str:
    response = await h.client.post("/v1/aftersales/evidence", content=PNG, params=params,
                                   headers=headers | {"Content-Type": "image/png"})  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_refund_only_is_refunded_once_the_order_service_reports_the_refund(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-1")
    case = (await h.apply("o-1", amount_fen=800, description="送了一个半小时")).json()
    assert (case["state"], case["asked_fen"], case["deadline"]) == ("requested", 800, "perishable_answer")
    assert case["next_actions"]["merchant"] == ["approve", "negotiate", "reject"]
    assert "cancel" in case["next_actions"]["customer"]
    approved = (await h.act(case["id"], "approve")).json()
    assert (approved["state"], approved["agreed_fen"], approved["deadline_at"]) == ("refunding", 800, None)
    [asked] = await h.outbox("aftersales.refund_requested.v1")
    assert (asked["data"]["amount_fen"], asked["data"]["attempt"], asked["subject"]) == (800, 1, "o-1")
    await h.refund_succeeded("o-1", case["id"], 800)
    done = await h.case(case["id"], headers=CUSTOMER)
    assert (done["state"], done["agreed_fen"], done["refunded_fen"]) == ("refunded", 800, 800)
    assert await h.events("o-1") == [
        "aftersales.requested.v1", "aftersales.approved.v1", "aftersales.refund_requested.v1",
        "aftersales.refunded.v1",
    ]  # fmt: skip
    history = (await h.client.get(f"/v1/aftersales/cases/{case['id']}/history", headers=CUSTOMER)).json()
    assert [(c["from_state"], c["to_state"], c["side"]) for c in history] == [
        (None, "requested", "customer"), ("requested", "approved", "merchant"), ("approved", "refunding", "system"),
        ("refunding", "refunded", "system"),
    ]  # fmt: skip


async def test_a_return_is_refunded_on_receipt_not_on_approval(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-2")
    refused = await h.apply("o-2", type="return_refund", reason_code="quality_issue", expect=422)
    assert refused.json()["type"].endswith("evidence-required")
    photo = await _upload(h)
    case = (await h.apply("o-2", type="return_refund", reason_code="quality_issue", evidence_ids=[photo])).json()
    assert [e["id"] for e in case["evidence"]] == [photo]
    approved = (await h.act(case["id"], "approve")).json()
    assert (approved["state"], approved["deadline"]) == ("awaiting_return", "return_shipment")
    assert await h.outbox("aftersales.refund_requested.v1") == []
    missing = await h.act(case["id"], "ship-return", headers=CUSTOMER, expect=422)
    assert "tracking" in missing.json()["detail"]
    shipped = (await h.act(case["id"], "ship-return", headers=CUSTOMER, carrier="sf", tracking_no="SF123")).json()
    assert (shipped["state"], shipped["return_shipment"]) == (
        "return_in_transit",
        {"carrier": "sf", "tracking_no": "SF123"},
    )
    received = (await h.act(case["id"], "confirm-receipt")).json()
    assert received["state"] == "refunding"
    [asked] = await h.outbox("aftersales.refund_requested.v1")
    assert asked["data"]["amount_fen"] == 1500
    await h.refund_succeeded("o-2", case["id"], 1500)
    assert (await h.case(case["id"]))["state"] == "refunded"


async def test_an_exchange_goes_back_and_is_reshipped_without_money(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-3", fulfilment_mode="express")
    case = (await h.apply("o-3", type="exchange", reason_code="wrong_size")).json()
    assert (case["asked_fen"], case["deadline"]) == (0, "standard_answer")
    assert "negotiate" not in case["next_actions"]["merchant"]
    await h.act(case["id"], "approve")
    collected = (await h.act(case["id"], "ship-return", collected_by="rider-7")).json()  # the store's rider
    assert collected["return_shipment"] == {"collected_by": "rider-7"}
    reshipping = (await h.act(case["id"], "confirm-receipt")).json()
    assert reshipping["state"] == "reshipping"
    done = (await h.act(case["id"], "deliver-exchange", carrier="sf", tracking_no="SF9")).json()
    assert (done["state"], done["reship_shipment"]) == ("exchanged", {"carrier": "sf", "tracking_no": "SF9"})
    [closed] = await h.outbox("aftersales.closed.v1")
    assert closed["data"]["outcome"] == "exchanged"
    assert await h.outbox("aftersales.refund_requested.v1") == []


async def test_a_negotiated_refund_without_return_becomes_refund_only(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-4")
    case = (await h.apply("o-4", type="return_refund", reason_code="no_longer_wanted")).json()
    too_much = await h.act(case["id"], "negotiate", amount_fen=5000, expect=409)
    assert too_much.json()["type"].endswith("amount-too-large")
    proposed = (await h.act(case["id"], "negotiate", amount_fen=500, without_return=True, note="鲜品,不用退")).json()
    assert (proposed["state"], proposed["deadline"]) == ("negotiating", "customer_confirm")
    refused = await h.act(case["id"], "accept", headers=MERCHANT, expect=409)  # not the merchant's to accept
    assert refused.json()["type"].endswith("invalid-transition")
    accepted = (await h.act(case["id"], "accept", headers=CUSTOMER)).json()
    assert (accepted["type"], accepted["state"], accepted["agreed_fen"]) == ("refund_only", "refunding", 500)
    [negotiated] = await h.outbox("aftersales.negotiated.v1")
    assert negotiated["data"]["proposed_fen"] == 500


async def test_a_rejection_escalated_is_ruled_by_ops(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-5")
    case = (await h.apply("o-5", reason_code="missing_item", description="少了一个卤蛋",
                          lines=[{"sku_id": "sku-egg", "quantity": 1}])).json()  # fmt: skip
    wrong = await h.act(case["id"], "reject", reason_code="not_resellable", expect=422)
    assert wrong.json()["type"].endswith("invalid-reason")
    bare = await h.act(case["id"], "reject", reason_code="delivered_as_ordered", expect=422)
    assert bare.json()["type"].endswith("evidence-required")
    rejected = (await h.act(case["id"], "reject", reason_code="delivered_as_ordered", note="出餐时核对过")).json()
    assert (rejected["state"], rejected["deadline"]) == ("rejected", "escalation")
    escalated = (await h.act(case["id"], "escalate", headers=CUSTOMER, note="确实没有")).json()
    assert (escalated["state"], escalated["deadline"]) == ("in_arbitration", "arbitration_evidence")
    late = await h.act(case["id"], "approve", expect=409)  # the decision left the merchant
    assert late.json()["type"].endswith("invalid-transition")
    merchant_ruling = await h.client.post(f"/v1/aftersales/cases/{case['id']}/ruling", headers=MERCHANT,
                                          json={"outcome": "refund"})  # fmt: skip
    assert merchant_ruling.status_code == 403
    ruled = await h.client.post(f"/v1/aftersales/cases/{case['id']}/ruling", headers=OPS,
                                json={"outcome": "refund", "amount_fen": 200, "note": "证据不足,部分支持"})  # fmt: skip
    assert ruled.status_code == 200, ruled.text
    assert (ruled.json()["state"], ruled.json()["agreed_fen"], ruled.json()["ruling"]["outcome"]) == (
        "refunding", 200, "refund")  # fmt: skip
    types = await h.events("o-5")
    assert types[:4] == ["aftersales.requested.v1", "aftersales.rejected.v1", "aftersales.escalated.v1",
                         "aftersales.ruled.v1"]  # fmt: skip


async def test_a_cancel_request_before_pickup_refunds_the_whole_order(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-6", event="order.accepted.v1", status="accepted")
    case = (await h.apply("o-6", type="cancel_request", reason_code="too_slow", lines=[])).json()
    assert (case["asked_fen"], case["deadline"]) == (3800, "cancel_answer")
    assert {line["sku_id"] for line in case["lines"]} == {"sku-bowl", "sku-egg", "delivery_fee"}
    await h.act(case["id"], "approve")
    [asked] = await h.outbox("aftersales.refund_requested.v1")
    assert (asked["data"]["type"], asked["data"]["amount_fen"]) == ("cancel_request", 3800)
    await h.order("o-7", event="order.accepted.v1", status="in_delivery")
    await h.deliver("delivery.picked_up.v1", "o-7", order_id="o-7", delivery_id="d-7", status="picked_up")
    late = await h.apply("o-7", type="cancel_request", reason_code="too_slow", lines=[], expect=409)
    assert late.json()["reason"] == "picked-up"


async def test_the_customer_cancels_and_the_lines_are_free_again(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-8")
    case = (await h.apply("o-8")).json()
    second = await h.apply("o-8", expect=409)
    assert second.json()["reason"] == "line-has-open-case"
    cancelled = (await h.act(case["id"], "cancel", headers=CUSTOMER)).json()
    assert (cancelled["state"], cancelled["next_actions"]) == (
        "closed_cancelled", {"customer": [], "merchant": [], "ops": []})  # fmt: skip
    again = await h.act(case["id"], "approve", expect=409)  # terminal states are never left
    assert again.json()["type"].endswith("invalid-transition")
    assert (await h.apply("o-8")).status_code == 201
    assert (await h.outbox("aftersales.cancelled.v1"))[0]["data"]["state"] == "closed_cancelled"


async def test_evidence_is_sniffed_capped_and_kept_to_the_parties(aftersales: AftersalesHarness) -> None:
    h = aftersales
    fake = await h.client.post("/v1/aftersales/evidence", content=b"<svg onload=alert(1)>",
                               headers=CUSTOMER | {"Content-Type": "image/png"})  # fmt: skip
    assert fake.status_code == 415, fake.text
    huge = await h.client.post("/v1/aftersales/evidence", content=PNG + b"\x00" * (2 * 1024 * 1024),
                               headers=CUSTOMER | {"Content-Type": "image/png"})  # fmt: skip
    assert huge.status_code == 413, huge.text
    first = await h.client.post("/v1/aftersales/evidence", content=PNG,
                                headers=CUSTOMER | {"Idempotency-Key": "photo-0001"})  # fmt: skip
    again = await h.client.post("/v1/aftersales/evidence", content=PNG,
                                headers=CUSTOMER | {"Idempotency-Key": "photo-0001"})  # fmt: skip
    assert (first.status_code, again.status_code, again.json()["id"]) == (201, 200, first.json()["id"])
    photo = first.json()["id"]
    assert (await h.client.get(f"/v1/aftersales/evidence/{photo}", headers=MERCHANT)).status_code == 404
    await h.order("o-9")
    case = (await h.apply("o-9", type="refund_only", reason_code="wrong_item", evidence_ids=[photo])).json()
    seen = await h.client.get(f"/v1/aftersales/evidence/{photo}", headers=MERCHANT)
    assert (seen.status_code, seen.content, seen.headers["content-type"]) == (200, PNG, "image/png")
    for stranger in (OTHER_CUSTOMER, OTHER_MERCHANT):
        assert (await h.client.get(f"/v1/aftersales/evidence/{photo}", headers=stranger)).status_code == 404
    stolen = await h.apply("o-9", headers=OTHER_CUSTOMER, expect=404)
    assert stolen.json()["type"].endswith("order-not-found")
    merchant_photo = await _upload(h, headers=MERCHANT, case_id=case["id"])
    assert (await h.client.get(f"/v1/aftersales/evidence/{merchant_photo}", headers=CUSTOMER)).status_code == 200
    assert (await h.client.get(f"/v1/aftersales/evidence/{merchant_photo}", headers=OPS)).status_code == 200
