"""The limits under concurrency and across cases, non-delivery compensation from delivery events (replayed), and
tenancy: a case is seen by its customer, its store's staff and ops, and by nobody else (404); a tracking link's
principal (the customer's, limited to one order) sees that order's cases only, even called directly."""

from __future__ import annotations

import asyncio

from tests.aftersales.conftest import (
    CUSTOMER,
    MERCHANT,
    OPS,
    OTHER_CUSTOMER,
    OTHER_MERCHANT,
    OTHER_STORE_STAFF,
    PNG,
    RIDER,
    AftersalesHarness,
)
from tests.support import bearer


async def test_twenty_concurrent_applications_for_one_line_open_one_case(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-1")
    answers = await asyncio.gather(*(h.apply("o-1", amount_fen=100 + i, expect=None) for i in range(20)))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 19
    assert {r.json()["reason"] for r in answers if r.status_code == 409} == {"line-has-open-case"}
    assert await h.sql("SELECT count(*) FROM aftersales_case") == [(1,)]
    assert len(await h.outbox("aftersales.requested.v1")) == 1


async def test_an_idempotent_application_is_answered_once(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-2")
    first, again = await asyncio.gather(h.apply("o-2", key="apply-o2-01", expect=None),
                                        h.apply("o-2", key="apply-o2-01", expect=None))  # fmt: skip
    assert sorted((first.status_code, again.status_code)) == [200, 201]
    assert first.json()["id"] == again.json()["id"]
    other = await h.apply("o-2", key="apply-o2-01", amount_fen=1, expect=422)
    assert other.json()["type"].endswith("idempotency-key-reused")


async def test_refunds_never_exceed_what_was_paid_across_cases(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-3")  # two bowls at 1500, egg 300, delivery 500: 3800 paid
    too_much = await h.apply("o-3", amount_fen=1501, expect=409)  # one bowl is worth 1500
    assert too_much.json()["refundable_fen"] == 1500
    first = (await h.apply("o-3", amount_fen=1200, lines=[{"sku_id": "sku-bowl", "quantity": 2}])).json()
    await h.act(first["id"], "approve")
    await h.refund_succeeded("o-3", first["id"], 1200)
    # The bowls are worth 3000, 1200 of it refunded: 1800 is left of them.
    assert (await h.apply("o-3", lines=[{"sku_id": "sku-bowl", "quantity": 2}], amount_fen=1801,
                          expect=409)).json()["refundable_fen"] == 1800  # fmt: skip
    # The order service refunded 2000 by itself (a merchant's goodwill): only 600 of the 3800 is left anywhere.
    goodwill = {"out_refund_no": "o-3Rgoodwill", "cause": "merchant_goodwill", "amount_fen": 2000}
    await h.order("o-3", event="order.refunded.v1", refunded_fen=3200, status="partially_refunded", refund=goodwill)
    capped = await h.apply("o-3", lines=[{"sku_id": "sku-bowl", "quantity": 2}], amount_fen=700, expect=409)
    assert capped.json()["refundable_fen"] == 600
    second = (await h.apply("o-3", lines=[{"sku_id": "sku-bowl", "quantity": 2}])).json()
    assert second["asked_fen"] == 600  # all that is left, by default
    # While it is open, its 600 counts: nothing is left for the fee.
    fee = await h.apply("o-3", lines=[{"sku_id": "delivery_fee", "quantity": 1}], expect=409)
    assert fee.json()["reason"] == "nothing-refundable"


async def test_five_cases_per_line_at_most(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-4")
    for _ in range(5):
        case = (await h.apply("o-4", lines=[{"sku_id": "sku-egg", "quantity": 1}], amount_fen=10)).json()
        await h.act(case["id"], "cancel", headers=CUSTOMER)
    sixth = await h.apply("o-4", lines=[{"sku_id": "sku-egg", "quantity": 1}], amount_fen=10, expect=409)
    assert sixth.json()["reason"] == "too-many-cases"


async def test_no_case_for_an_unpaid_order_or_before_it_arrived(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-5", event="order.placed.v1", status="pending_payment", paid_at=None)
    assert (await h.apply("o-5", expect=409)).json()["reason"] == "not-paid"
    await h.order("o-6", event="order.paid.v1", status="paid")
    assert (await h.apply("o-6", expect=409)).json()["reason"] == "not-received-yet"
    assert (await h.apply("o-404", expect=404)).json()["type"].endswith("order-not-found")
    nd = await h.apply("o-6", type="non_delivery", reason_code="delivery_failed", expect=422)
    assert nd.status_code == 422


async def test_force_majeure_opens_compensation_once_and_refunds_its_tier(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-7", event="order.accepted.v1", status="dispatching")
    ended = await h.deliver("delivery.cancelled.v1", "o-7", order_id="o-7", delivery_id="d-1", status="cancelled",
                            carrier="dada", reason="force_majeure")  # fmt: skip
    await h.redeliver(ended)  # the same event again
    await h.deliver("delivery.cancelled.v1", "o-7", order_id="o-7", delivery_id="d-1", status="cancelled",
                    carrier="dada", reason="force_majeure")  # fmt: skip  # re-published under a new id
    await h.deliver("delivery.returned.v1", "o-7", order_id="o-7", delivery_id="d-2", status="returned",
                    carrier="sf")  # fmt: skip  # a re-dispatch that failed too
    [case] = (await h.client.get("/v1/aftersales/cases?order_id=o-7", headers=OPS)).json()["items"]
    # 3800 fen paid, below 100 yuan: 50 %.
    assert (case["type"], case["state"], case["agreed_fen"]) == ("non_delivery", "refunding", 1900)
    assert {(c["kind"], c["party"], c["amount_fen"], c["status"]) for c in case["compensations"]} == {
        ("customer", "openid-alice", 1900, "granted"), ("carrier_claim", "dada", 1900, "open")}  # fmt: skip
    [asked] = await h.outbox("aftersales.refund_requested.v1")
    assert (asked["data"]["amount_fen"], asked["data"]["case_id"]) == (1900, case["id"])
    [granted] = await h.outbox("aftersales.compensation_granted.v1")
    assert (granted["data"]["rate_percent"], granted["data"]["basis_fen"]) == (50, 3800)
    outcome = await h.refund_succeeded("o-7", case["id"], 1900)
    await h.redeliver(outcome)
    settled = await h.case(case["id"])
    assert (settled["state"], settled["refunded_fen"]) == ("refunded", 1900)
    assert len(await h.outbox("aftersales.refunded.v1")) == 1
    mine = await h.case(case["id"], headers=CUSTOMER)
    assert [(c["kind"], c["status"]) for c in mine["compensations"]] == [("customer", "paid")]  # no carrier claim
    claim = next(c for c in settled["compensations"] if c["kind"] == "carrier_claim")
    recovered = await h.client.post(f"/v1/aftersales/compensations/{claim['id']}/settlement", headers=OPS,
                                    json={"recovered_fen": 1900})  # fmt: skip
    assert (recovered.status_code, recovered.json()["status"]) == (200, "recovered")
    twice = await h.client.post(f"/v1/aftersales/compensations/{claim['id']}/settlement", headers=OPS,
                                json={"recovered_fen": 1900})  # fmt: skip
    assert twice.status_code == 409


async def test_an_unreachable_return_compensates_by_the_tier_of_a_large_order(aftersales: AftersalesHarness) -> None:
    h = aftersales
    items = [{"sku_id": "sku-cake", "product_id": "p", "name": "蛋糕", "price_fen": 20_000, "quantity": 1}]
    await h.order("o-8", event="order.accepted.v1", status="in_delivery", items=items, delivery_fee_fen=0)
    await h.deliver("delivery.returned.v1", "o-8", order_id="o-8", delivery_id="d-8", status="returned",
                    carrier="shunfeng", reason="returning")  # fmt: skip
    [case] = (await h.client.get("/v1/aftersales/cases", headers=MERCHANT)).json()["items"]
    assert (case["agreed_fen"], case["next_actions"]["merchant"]) == (6000, [])  # 30 % of 200 yuan


async def test_our_own_cancellation_or_a_refunded_order_compensates_nothing(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-9", event="order.accepted.v1", status="dispatching")
    await h.deliver("delivery.cancelled.v1", "o-9", order_id="o-9", delivery_id="d-9", status="cancelled",
                    carrier="dada", by="merchant:staff-1")  # fmt: skip
    await h.order("o-10", event="order.cancelled.v1", status="refunding")
    await h.deliver("delivery.cancelled.v1", "o-10", order_id="o-10", delivery_id="d-10", status="failed")
    assert await h.sql("SELECT count(*) FROM aftersales_case") == [(0,)]


async def test_a_case_is_nobody_elses_business(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-11")
    case = (await h.apply("o-11")).json()
    for stranger in (OTHER_CUSTOMER, OTHER_MERCHANT, OTHER_STORE_STAFF):
        assert (await h.client.get(f"/v1/aftersales/cases/{case['id']}", headers=stranger)).status_code == 404
        assert (await h.act(case["id"], "approve", headers=stranger, expect=404)).json()["type"].endswith(
            "case-not-found")  # fmt: skip
        assert (await h.client.get("/v1/aftersales/cases", headers=stranger)).json()["total"] == 0
    assert (await h.client.get(f"/v1/aftersales/cases/{case['id']}", headers=RIDER)).status_code == 403
    for party in (CUSTOMER, MERCHANT, OPS):
        assert (await h.client.get("/v1/aftersales/cases", headers=party)).json()["total"] == 1
    assert (await h.act(case["id"], "approve", headers=CUSTOMER, expect=409)).json()["state"] == "requested"
    assert (await h.act(case["id"], "fly", expect=404)).status_code == 404


async def test_a_tracking_links_principal_sees_only_its_orders_cases(aftersales: AftersalesHarness) -> None:
    h = aftersales
    for order_id in ("o-12", "o-13"):
        await h.order(order_id)
    linked = (await h.apply("o-12")).json()
    photo = await h.client.post("/v1/aftersales/evidence", content=PNG,
                                headers=CUSTOMER | {"Content-Type": "image/png"})  # fmt: skip
    assert photo.status_code == 201, photo.text
    other = (await h.apply("o-13", description="凉了", evidence_ids=[photo.json()["id"]])).json()
    tracking = bearer("customer", "openid-alice", "m-1", order_id="o-12")

    listed = (await h.client.get("/v1/aftersales/cases", headers=tracking)).json()
    assert [case["id"] for case in listed["items"]] == [linked["id"]]
    assert (await h.client.get(f"/v1/aftersales/cases/{linked['id']}", headers=tracking)).status_code == 200
    assert (await h.client.get(f"/v1/aftersales/cases/{other['id']}", headers=tracking)).status_code == 404
    assert (await h.client.get(f"/v1/aftersales/cases/{other['id']}/history", headers=tracking)).status_code == 404
    evidence = f"/v1/aftersales/evidence/{photo.json()['id']}"
    assert (await h.client.get(evidence, headers=CUSTOMER)).status_code == 200
    assert (await h.client.get(evidence, headers=tracking)).status_code == 404
    unattached = await h.client.post("/v1/aftersales/evidence", content=PNG,
                                     headers=CUSTOMER | {"Content-Type": "image/png"})  # fmt: skip
    loose = f"/v1/aftersales/evidence/{unattached.json()['id']}"
    assert (await h.client.get(loose, headers=CUSTOMER)).status_code == 200
    assert (await h.client.get(loose, headers=tracking)).status_code == 404


async def test_a_non_delivery_beside_an_open_case_compensates_what_is_left(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-12")
    mine = (await h.apply("o-12", amount_fen=1000)).json()
    await h.deliver("delivery.cancelled.v1", "o-12", order_id="o-12", delivery_id="d-12", status="failed")
    items = (await h.client.get("/v1/aftersales/cases?order_id=o-12", headers=OPS)).json()["items"]
    [granted] = [c for c in items if c["type"] == "non_delivery"]
    assert granted["agreed_fen"] == 1900  # 50 % of 3800: 2800 was left
    assert (await h.case(mine["id"]))["state"] == "requested"
    assert [c["kind"] for c in granted["compensations"]] == ["customer"]  # no carrier to claim from
