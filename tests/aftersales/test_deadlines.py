"""Every deadline by moving the clock: nothing fires early, it fires once, and it does nothing if the case moved
on. Merchants' overrides and ops' extensions move them; a "never arrived" claim against a proven delivery goes to
arbitration on the merchant's silence instead of being approved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.aftersales.conftest import CUSTOMER, MERCHANT, OPS, AftersalesHarness

MINUTE = timedelta(minutes=1)


async def _expires(h: AftersalesHarness, case_id: str, after: timedelta, expected_state: str) -> dict[str, Any]:
    """Nothing a minute before `after`; the move at `after`; nothing more when the timers run again."""
    state = (await h.case(case_id))["state"]
    await h.advance(after - MINUTE)
    assert (await h.case(case_id))["state"] == state, "fired early"
    await h.advance(MINUTE)
    moved = await h.case(case_id)
    assert moved["state"] == expected_state
    changes = await h.sql("SELECT count(*) FROM aftersales_case_change WHERE case_id = :c", c=case_id)
    # Once: running the timers again changes nothing (and with no deadline left, nothing ever will).
    await h.advance(timedelta(days=40) if moved["deadline_at"] is None else timedelta(0))
    assert await h.sql("SELECT count(*) FROM aftersales_case_change WHERE case_id = :c", c=case_id) == changes
    return moved


async def test_the_merchants_silence_approves_a_food_case_after_3_hours_once(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-1")
    case = (await h.apply("o-1", amount_fen=600)).json()
    assert case["deadline_at"] == (h.clock.now() + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    moved = await _expires(h, case["id"], timedelta(hours=3), "refunding")
    assert moved["agreed_fen"] == 600
    assert len(await h.outbox("aftersales.refund_requested.v1")) == 1
    [approved] = await h.outbox("aftersales.approved.v1")
    assert (approved["data"]["auto"], approved["data"]["actor"]) == (True, "timer:perishable_answer")


async def test_an_answer_before_the_deadline_leaves_the_timer_nothing_to_do(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-2")
    case = (await h.apply("o-2")).json()
    await h.advance(timedelta(hours=1))
    await h.act(case["id"], "reject", reason_code="other", note="顾客已取走,无问题")
    await h.advance(timedelta(hours=2, minutes=1))  # the answer deadline's time: it was cancelled with the move
    assert (await h.case(case["id"]))["state"] == "rejected"
    assert await h.outbox("aftersales.approved.v1") == []
    # A stale timer (armed for the old version) that still fires finds the case moved on and does nothing.
    await h.sql("UPDATE timer SET cancelled_at = NULL, fired_at = NULL, due_at = :due WHERE key = :k",
                k=f"{case['id']}:1", due=h.clock.now() - MINUTE)  # fmt: skip
    assert await h.timers.fire_due() == 1
    assert (await h.case(case["id"]))["state"] == "rejected"


async def test_no_escalation_within_7_days_closes_a_rejected_case(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-3")
    case = (await h.apply("o-3")).json()
    await h.act(case["id"], "reject", reason_code="other", note="不认可")
    await _expires(h, case["id"], timedelta(days=7), "closed_rejected")
    [closed] = await h.outbox("aftersales.closed.v1")
    assert closed["data"]["outcome"] == "rejected"


async def test_an_unshipped_return_closes_after_7_days_and_an_unconfirmed_receipt_refunds_after_10(
    aftersales: AftersalesHarness,
) -> None:
    h = aftersales
    await h.order("o-4")
    await h.order("o-5")
    idle = (await h.apply("o-4", type="return_refund", reason_code="no_longer_wanted")).json()
    shipped = (await h.apply("o-5", type="return_refund", reason_code="no_longer_wanted")).json()
    await h.act(idle["id"], "approve")
    await h.act(shipped["id"], "approve")
    await h.act(shipped["id"], "ship-return", headers=CUSTOMER, carrier="sf", tracking_no="SF1")
    await _expires(h, idle["id"], timedelta(days=7), "closed_return_expired")
    await _expires(h, shipped["id"], timedelta(days=3), "refunding")  # 7 of its 10 days passed already
    moved = await h.case(shipped["id"])
    receipt_sql = "SELECT actor FROM aftersales_case_change WHERE case_id = :c AND action = 'confirm_receipt'"
    [receipt] = await h.sql(receipt_sql, c=shipped["id"])
    assert receipt == ("timer:merchant_receipt",)
    assert moved["refund_attempt"] == 1
    assert [e["subject"] for e in await h.outbox("aftersales.refund_requested.v1")] == ["o-5"]


async def test_an_unanswered_proposal_returns_to_the_merchant_and_arbitration_evidence_closes(
    aftersales: AftersalesHarness,
) -> None:
    h = aftersales
    await h.order("o-6")
    case = (await h.apply("o-6")).json()
    await h.act(case["id"], "negotiate", amount_fen=300)
    back = await _expires(h, case["id"], timedelta(hours=48), "requested")
    assert back["deadline"] == "perishable_answer"  # the merchant's answer runs again
    await h.act(case["id"], "reject", reason_code="other", note="协商未果")
    await h.act(case["id"], "escalate", headers=CUSTOMER)
    ruling_due = await _expires(h, case["id"], timedelta(hours=48), "awaiting_ruling")
    assert ruling_due["next_actions"]["ops"] == ["rule_refund", "rule_reject"]


async def test_a_cancel_request_waits_15_minutes(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-7", event="order.paid.v1", status="paid")
    cancel = (await h.apply("o-7", type="cancel_request", reason_code="ordered_by_mistake", lines=[])).json()
    await _expires(h, cancel["id"], timedelta(minutes=15), "refunding")


async def test_an_express_order_waits_48_hours(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-8", fulfilment_mode="express")
    parcel = (await h.apply("o-8")).json()
    assert parcel["deadline"] == "standard_answer"
    await _expires(h, parcel["id"], timedelta(hours=48), "refunding")


async def test_ops_extend_a_deadline_and_merchants_shorten_their_own(aftersales: AftersalesHarness) -> None:
    h = aftersales
    longer = await h.client.put(
        "/v1/aftersales/policies/m-1", headers=MERCHANT, json={"perishable_answer_minutes": 600}
    )
    assert longer.status_code == 403  # store-scoped staff
    from tests.support import bearer

    owner = bearer("merchant", "owner", "m-1")
    stall = await h.client.put("/v1/aftersales/policies/m-1", headers=owner, json={"perishable_answer_minutes": 600})
    assert (stall.status_code, stall.json()["field"]) == (422, "perishable_answer_minutes")
    shut = await h.client.put("/v1/aftersales/policies/m-1", headers=owner, json={"perishable_window_hours": 1})
    assert shut.status_code == 422
    quick = await h.client.put("/v1/aftersales/policies/m-1", headers=owner, json={"perishable_answer_minutes": 90})
    assert (quick.status_code, quick.json()["perishable_answer_minutes"]) == (200, 90)
    # The store's own setting wins over its merchant's.
    store = await h.client.put("/v1/aftersales/policies/m-1?store_id=s-1", headers=MERCHANT,
                               json={"perishable_answer_minutes": 60, "perishable_window_hours": 48})  # fmt: skip
    assert (store.status_code, store.json()["perishable_answer_minutes"]) == (200, 60), store.text
    seen = await h.client.get("/v1/aftersales/policies/m-1?store_id=s-1", headers=OPS)
    assert (seen.json()["perishable_window_hours"], seen.json()["standard_answer_minutes"]) == (48, 48 * 60)
    await h.order("o-9")
    case = (await h.apply("o-9")).json()
    original = h.clock.now() + timedelta(minutes=60)
    later = (original + timedelta(hours=5)).isoformat()
    refused = await h.client.post(f"/v1/aftersales/cases/{case['id']}/deadline", headers=MERCHANT,
                                  json={"deadline_at": later})  # fmt: skip
    assert refused.status_code == 403
    extended = await h.client.post(f"/v1/aftersales/cases/{case['id']}/deadline", headers=OPS,
                                   json={"deadline_at": later, "note": "春节"})  # fmt: skip
    assert extended.status_code == 200, extended.text
    await h.advance(timedelta(minutes=61))
    assert (await h.case(case["id"]))["state"] == "requested"
    await _expires(h, case["id"], timedelta(hours=5) - MINUTE, "refunding")


async def test_a_never_arrived_claim_against_a_handover_goes_to_ops_with_the_proof(
    aftersales: AftersalesHarness,
) -> None:
    h = aftersales
    await h.order("o-10", event="order.accepted.v1", status="in_delivery")
    await h.deliver("code.redeemed.v1", "o-10", order_id="o-10", code_id="c-1", kind="finish", redemption_id="r-1",
                    redeemed_by="rider:rider-1", device_id="phone-1", store_id="s-1")  # fmt: skip
    case = (await h.apply("o-10", reason_code="not_received", description="根本没收到")).json()
    assert case["delivery_proofs"] == []  # the customer sees the case, not the rider's record
    moved = await _expires(h, case["id"], timedelta(hours=3), "in_arbitration")
    [proof] = moved["delivery_proofs"]
    assert (proof["kind"], proof["redeemed_by"], proof["device_id"]) == ("handover", "rider:rider-1", "phone-1")
    assert await h.outbox("aftersales.approved.v1") == []
    [escalated] = await h.outbox("aftersales.escalated.v1")
    assert escalated["data"]["by_system"] is True
