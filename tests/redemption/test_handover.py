"""A finish code is proof of delivery: a rider redeems one only with dispatch's voucher for the delivery they are
handing over, and only that delivery's code, refused before anything is redeemed; each attempt has its own
request_no, so a retry gets its first answer and a new attempt is always possible."""

from __future__ import annotations

from datetime import timedelta

from shared.keys import generate_signing_key
from tests.redemption.conftest import MERCHANT, OPS, OTHER_RIDER, RIDER, RedemptionHarness
from tests.support import bearer


def _digits(code: dict[str, object]) -> str:
    return str(code["code"]).replace(" ", "")


def _typo(digits: str) -> str:
    return digits[:3] + str((int(digits[3]) + 1) % 10) + digits[4:]


async def test_a_rider_redeems_only_the_finish_code_of_the_delivery_vouched_for(redemption: RedemptionHarness) -> None:
    r = redemption
    mine = await r.order_paid("o-1", mode="delivery")
    theirs = await r.order_paid("o-2", mode="delivery")
    pickup = await r.order_paid("o-3")
    voucher = r.handover("o-1")

    async def hand_over(request_no: str, headers: dict[str, str] | None = None, **presented: str) -> tuple[int, str]:
        response = await r.redeem(request_no=request_no, headers=headers or RIDER | voucher, store_id=None, **presented)
        return response.status_code, str(response.json().get("type", "redeemed"))

    # Another customer's code (the wrong door) and a pickup code of the same merchant: refused, nothing redeemed.
    assert await hand_over("handover-a1", code=_digits(theirs)) == (409, "/problems/wrong-order")
    assert await hand_over("handover-a2", code=_digits(pickup)) == (409, "/problems/wrong-order")
    # No voucher, another rider's voucher, a forged or an expired one: refused before any lookup.
    assert await hand_over("handover-a3", RIDER, code=_digits(mine)) == (403, "/problems/handover-required")
    assert await hand_over("handover-a4", OTHER_RIDER | voucher, code=_digits(mine)) == (
        403,
        "/problems/handover-required",
    )
    forged = r.handover("o-1", key=generate_signing_key())
    assert (await r.redeem(code=_digits(mine), headers=RIDER | forged, store_id=None)).status_code == 403
    r.clock.advance(timedelta(minutes=2))
    assert await hand_over("handover-a5", code=_digits(mine)) == (403, "/problems/forbidden")  # the voucher expired
    voucher = r.handover("o-1")
    # Merchant staff cannot redeem a finish code at the counter either.
    staff = await r.redeem(code=_digits(mine), headers=MERCHANT)
    assert (staff.status_code, staff.json()["type"]) == (403, "/problems/handover-required")
    # A mistyped code, then a stale QR: each a refusal, and each next attempt is a new request that can pass.
    assert await hand_over("handover-a6", code=_typo(_digits(mine))) == (422, "/problems/check-digit-failed")
    stale = mine["qr_token"]
    r.clock.advance(timedelta(seconds=90))
    voucher = r.handover("o-1")
    assert await hand_over("handover-a7", qr_token=stale) == (422, "/problems/token-not-valid")
    assert await r.sql("SELECT kind, status FROM code ORDER BY kind, order_id") == [
        ("finish", "active"), ("finish", "active"), ("pickup", "active")
    ]  # fmt: skip
    fresh = (await r.client.get(f"/v1/codes/{mine['id']}", headers=bearer("customer", "openid-alice"))).json()
    first = await r.redeem(request_no="handover-a8", qr_token=fresh["qr_token"], headers=RIDER | voucher, store_id=None)
    assert first.status_code == 201
    # The rider app timed out and retries the same attempt: the same answer, nothing more redeemed.
    r.clock.advance(timedelta(seconds=40))
    retry = await r.redeem(request_no="handover-a8", qr_token=fresh["qr_token"], headers=RIDER | voucher, store_id=None)
    assert (retry.status_code, retry.json(), retry.headers["Idempotent-Replayed"]) == (201, first.json(), "true")
    assert await r.sql("SELECT count(*) FROM redemption") == [(1,)]
    # Ops may still settle a dispute at the counter.
    assert (await r.redeem(code=_digits(theirs), headers=OPS)).status_code == 201


async def test_a_rider_trying_codes_of_other_orders_locks_out_only_themselves(redemption: RedemptionHarness) -> None:
    r = redemption
    await r.order_paid("o-1", mode="delivery")
    others = [await r.order_paid(f"o-{n}", mode="delivery") for n in range(2, 8)]
    voucher = r.handover("o-1")
    for n, other in enumerate(others[:5]):
        await r.redeem(request_no=f"guess-{n}", code=_digits(other), headers=RIDER | voucher, store_id=None)
    locked = await r.redeem(request_no="guess-9", code=_digits(others[5]), headers=RIDER | voucher, store_id=None)
    assert (locked.status_code, locked.json()["type"]) == (423, "/problems/locked-out")
    locks = (await r.client.get("/v1/redemptions/lockouts", headers=OPS)).json()
    assert [(x["scope"], x["key"]) for x in locks] == [("principal", "rider-1")]
