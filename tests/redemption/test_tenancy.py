"""Each caller touches only what is theirs: store-scoped staff stay in their stores, another merchant's objects are
'not found', and nobody can lock another merchant's store or scanner out by naming it."""

from __future__ import annotations

from services.redemption import codes
from tests.redemption.conftest import CUSTOMER, MERCHANT, OPS, OTHER_MERCHANT, OTHER_RIDER, RedemptionHarness
from tests.support import bearer

MERCHANT_WIDE = bearer("merchant", "owner-1", "m-1")
OTHER_STORE_STAFF = bearer("merchant", "staff-3", "m-1", store_ids=["s-2"])
UNKNOWN = "00000000000"


def _digits(code: dict[str, object]) -> str:
    return str(code["code"]).replace(" ", "")


async def test_store_scoped_staff_see_and_reverse_only_their_stores(redemption: RedemptionHarness) -> None:
    r = redemption
    code = await r.order_paid("o-1")
    redeemed = (await r.redeem(code=_digits(code), device_id="pos-1")).json()
    for headers in (OTHER_STORE_STAFF, OTHER_MERCHANT):
        reverse = await r.client.post(
            f"/v1/redemptions/{redeemed['id']}/reverse", json={"reason": "x"}, headers=headers
        )
        assert (reverse.status_code, reverse.json()["type"]) == (404, "/problems/redemption-not-found")
        assert (await r.client.get(f"/v1/codes/{code['id']}", headers=headers)).status_code == 404
        assert (await r.client.get("/v1/codes", headers=headers)).json()["total"] == 0
        assert (await r.client.get("/v1/redemptions/attempts", headers=headers)).json()["total"] == 0
    for headers in (MERCHANT, MERCHANT_WIDE, OPS):
        assert (await r.client.get("/v1/codes", headers=headers)).json()["total"] == 1
        assert (await r.client.get("/v1/redemptions/attempts", headers=headers)).json()["total"] == 1
    voucher = {"store_id": "s-1", "customer_id": "c", "title": "次卡", "uses": 2, "valid_until": "2026-12-31T00:00:00Z"}
    refused = await r.client.post("/v1/codes/vouchers", json=voucher, headers=OTHER_STORE_STAFF)
    assert refused.status_code == 403
    undo = await r.client.post(f"/v1/redemptions/{redeemed['id']}/reverse", json={"reason": "x"}, headers=MERCHANT_WIDE)
    assert undo.status_code == 200


async def test_guesses_naming_a_store_lock_it_only_when_the_caller_works_there(redemption: RedemptionHarness) -> None:
    r = redemption
    code = await r.order_paid("o-1")
    unknown = UNKNOWN + str(codes.damm_digit(UNKNOWN))
    for outsider in (OTHER_MERCHANT, OTHER_RIDER, OTHER_STORE_STAFF):
        for _ in range(5):
            await r.redeem(code=unknown, headers=outsider, device_id="pos-1")
    locks = (await r.client.get("/v1/redemptions/lockouts", headers=OPS)).json()
    # Staff of another merchant or store lock only themselves (another merchant's keys are its own); a rider
    # without a handover voucher guesses nothing.
    assert sorted((x["scope"], x["key"]) for x in locks) == [
        ("device", "m-2:s-1:pos-1"), ("principal", "staff-2"), ("principal", "staff-3"), ("store", "m-2:s-1")
    ]  # fmt: skip
    assert (await r.redeem(code=_digits(code), device_id="pos-1")).status_code == 201  # s-1 and pos-1 still work


async def test_a_voucher_naming_another_merchants_store_lends_no_lockout_over_it(redemption: RedemptionHarness) -> None:
    """The attack: merchant 2 issues a voucher naming merchant 1's store (a new one, with no code yet), then guesses
    there. Merchant 1's store and scanner keep working."""
    r = redemption
    voucher = {"store_id": "s-new", "customer_id": "openid-alice", "title": "次卡", "uses": 2,
               "valid_until": "2026-12-31T00:00:00Z"}  # fmt: skip
    assert (await r.client.post("/v1/codes/vouchers", json=voucher, headers=OTHER_MERCHANT)).status_code == 201
    unknown = UNKNOWN + str(codes.damm_digit(UNKNOWN))
    for _ in range(5):
        await r.redeem(code=unknown, headers=OTHER_MERCHANT, store_id="s-new", device_id="pos-1")
    mine = await r.client.post("/v1/codes/vouchers", json=voucher, headers=MERCHANT_WIDE)
    assert mine.status_code == 201, mine.text
    shown = (await r.client.get(f"/v1/codes/{mine.json()['id']}", headers=CUSTOMER)).json()
    answer = await r.redeem(code=_digits(shown), headers=MERCHANT_WIDE, store_id="s-new", device_id="pos-1")
    assert answer.status_code == 201, answer.text


async def test_a_tracking_links_principal_sees_only_its_orders_code(redemption: RedemptionHarness) -> None:
    r = redemption
    linked = await r.order_paid("o-1")
    other = await r.order_paid("o-2")  # the same customer's
    tracking = bearer("customer", "openid-alice", "m-1", order_id="o-1")

    page = (await r.client.get("/v1/codes", headers=tracking)).json()
    assert [c["id"] for c in page["items"]] == [linked["id"]]
    assert page["items"][0]["code"] == linked["code"]  # the owner's digits and QR: the page shows them
    assert page["items"][0]["qr_token"]
    assert (await r.client.get("/v1/codes?order_id=o-2", headers=tracking)).json()["total"] == 0
    assert (await r.client.get(f"/v1/codes/{other['id']}", headers=tracking)).status_code == 404
    assert (await r.client.get(f"/v1/codes/{linked['id']}", headers=tracking)).status_code == 200
    freeze = await r.client.post(f"/v1/codes/{linked['id']}/freeze", json={"reason": "x"}, headers=tracking)
    assert freeze.status_code == 403  # it only reads
    assert (await r.client.get("/v1/codes", headers=CUSTOMER)).json()["total"] == 2
