"""Redemption: one conditional update decides, request_no answers once, typos and stale QR tokens are refused,
guessing locks out, reversals respect their window, and every attempt is audited."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.redemption import codes
from tests.redemption.conftest import (
    CUSTOMER,
    MERCHANT,
    OPS,
    OTHER_CUSTOMER,
    OTHER_MERCHANT,
    RIDER,
    RedemptionHarness,
)


def _digits(code: dict[str, object]) -> str:
    return str(code["code"]).replace(" ", "")


async def test_an_order_paid_for_pickup_gets_one_pickup_code(redemption: RedemptionHarness) -> None:
    r = redemption
    code = await r.order_paid("o-1")
    assert (code["kind"], code["status"], code["uses_left"]) == ("pickup", "active", 1)
    digits = _digits(code)
    assert len(digits) == 12
    assert codes.check_digit_ok(digits)
    assert code["code"] == codes.grouped(digits)
    assert code["qr_token"].startswith("SDQ1.")
    assert 0 < code["qr_expires_in"] <= 30
    again = await r.order_paid("o-1")  # order.paid replayed as a new event: still one code
    assert again["id"] == code["id"]
    merchant_view = (await r.client.get(f"/v1/codes/{code['id']}", headers=MERCHANT)).json()
    assert merchant_view["code"] is None
    assert merchant_view["qr_token"] is None
    assert (await r.client.get(f"/v1/codes/{code['id']}", headers=OTHER_CUSTOMER)).status_code == 404
    svg = await r.client.get(f"/v1/codes/{code['id']}/qr.svg", headers=CUSTOMER)
    assert svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    png = await r.client.get(f"/v1/codes/{code['id']}/qr.png", headers=CUSTOMER)
    assert png.content.startswith(b"\x89PNG")
    assert (await r.client.get(f"/v1/codes/{code['id']}/qr.png", headers=MERCHANT)).status_code == 404
    assert [t for (t,) in await r.sql("SELECT type FROM outbox")] == ["code.issued.v1"]


async def test_two_hundred_concurrent_scans_of_one_code_redeem_it_once(redemption: RedemptionHarness) -> None:
    r = redemption
    digits = _digits(await r.order_paid("o-1"))
    responses = await asyncio.gather(*(r.redeem(code=digits, device_id=f"pos-{i % 7}") for i in range(200)))
    statuses = [x.status_code for x in responses]
    assert statuses.count(201) == 1
    assert statuses.count(409) == 199
    refusal = next(x.json() for x in responses if x.status_code == 409)
    assert refusal["type"] == "/problems/already-redeemed"
    assert refusal["redeemed_at_store"] == "s-1"
    assert refusal["redeemed_by"] == "merchant:staff-1"
    assert refusal["redeemed_at"]
    assert await r.sql("SELECT count(*) FROM redemption") == [(1,)]
    assert await r.sql("SELECT status, uses_left FROM code") == [("redeemed", 0)]
    assert await r.sql("SELECT count(*) FROM outbox WHERE type = 'code.redeemed.v1'") == [(1,)]


async def test_two_hundred_concurrent_scans_of_a_five_use_voucher_take_exactly_five(
    redemption: RedemptionHarness,
) -> None:
    r = redemption
    voucher = await r.voucher(uses=5)
    responses = await asyncio.gather(*(r.redeem(code=_digits(voucher)) for _ in range(200)))
    statuses = [x.status_code for x in responses]
    assert (statuses.count(201), statuses.count(409)) == (5, 195)
    assert sorted(x.json()["uses_left"] for x in responses if x.status_code == 201) == [0, 1, 2, 3, 4]
    assert await r.sql("SELECT status, uses_left FROM code") == [("redeemed", 0)]
    bundle = await r.voucher(uses=5)
    taken = await r.redeem(code=_digits(bundle), count=3)
    assert taken.json()["uses_left"] == 2
    too_many = await r.redeem(code=_digits(bundle), count=3)
    assert (too_many.status_code, too_many.json()["type"], too_many.json()["uses_left"]) == (
        409, "/problems/not-enough-uses", 2
    )  # fmt: skip


async def test_a_retried_request_no_gets_the_first_answer_and_redeems_nothing_more(
    redemption: RedemptionHarness,
) -> None:
    r = redemption
    voucher = await r.voucher(uses=5)
    first = await r.redeem(code=_digits(voucher), request_no="pos1-000042")
    retries = await asyncio.gather(*(r.redeem(code=_digits(voucher), request_no="pos1-000042") for _ in range(10)))
    assert first.status_code == 201
    assert all(x.status_code == 201 and x.json() == first.json() for x in retries)
    assert all(x.headers["Idempotent-Replayed"] == "true" for x in retries)
    assert await r.sql("SELECT uses_left FROM code") == [(4,)]
    # A refusal is an answer too: the same request_no keeps getting it.
    typo = _digits(voucher)[:-1] + str((int(_digits(voucher)[-1]) + 1) % 10)
    refused = await r.redeem(code=typo, request_no="pos1-000043")
    assert (await r.redeem(code=typo, request_no="pos1-000043")).json() == refused.json()
    reused = await r.redeem(code=_digits(voucher), request_no="pos1-000043")
    assert (reused.status_code, reused.json()["type"]) == (422, "/problems/request-no-reused")


async def test_a_mistyped_digit_fails_the_check_digit_before_any_lookup(redemption: RedemptionHarness) -> None:
    r = redemption
    digits = _digits(await r.order_paid("o-1"))
    for position in (0, 5, 11):
        wrong = digits[:position] + str((int(digits[position]) + 3) % 10) + digits[position + 1 :]
        response = await r.redeem(code=wrong)
        assert (response.status_code, response.json()["type"]) == (422, "/problems/check-digit-failed")
    swapped = next(
        digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :] for i in range(11) if digits[i] != digits[i + 1]
    )
    assert (await r.redeem(code=swapped)).json()["type"] == "/problems/check-digit-failed"
    spaced = await r.redeem(code=codes.grouped(digits))  # typed as shown, with spaces: fine
    assert spaced.status_code == 201


async def test_the_rotating_qr_token_stops_working_within_a_minute(redemption: RedemptionHarness) -> None:
    r = redemption
    code = await r.order_paid("o-1")
    screenshot = code["qr_token"]
    r.clock.advance(timedelta(seconds=40))  # the next step: still accepted (clock skew between phone and POS)
    preview = await r.client.post(
        "/v1/redemptions/preview", json={"qr_token": screenshot, "store_id": "s-1"}, headers=MERCHANT
    )
    assert preview.status_code == 200
    assert preview.json()["summary"]["items"][0]["name"] == "牛肉面 大碗"
    r.clock.advance(timedelta(seconds=30))  # two steps on: the screenshot is dead
    stale = await r.redeem(qr_token=screenshot)
    assert (stale.status_code, stale.json()["type"]) == (422, "/problems/token-not-valid")
    fresh = (await r.client.get(f"/v1/codes/{code['id']}", headers=CUSTOMER)).json()["qr_token"]
    assert fresh != screenshot
    assert (await r.redeem(qr_token=fresh)).status_code == 201
    forged = fresh[:-8] + f"{(int(fresh[-8:]) + 1) % 10**8:08d}"
    assert (await r.redeem(qr_token=forged)).json()["type"] == "/problems/token-not-valid"


async def test_guessing_locks_out_and_ops_unlock(redemption: RedemptionHarness) -> None:
    r = redemption
    digits = _digits(await r.order_paid("o-1"))
    unknown = "00000000000" + str(codes.damm_digit("00000000000"))
    for _ in range(5):
        assert (await r.redeem(code=unknown, device_id="pos-1")).json()["type"] == "/problems/code-not-found"
    locked = await r.redeem(code=digits, device_id="pos-1")
    assert (locked.status_code, locked.json()["type"]) == (423, "/problems/locked-out")
    locks = (await r.client.get("/v1/redemptions/lockouts", headers=OPS)).json()
    assert {(x["scope"], x["key"]) for x in locks} == {
        ("store", "m-1:s-1"), ("device", "m-1:s-1:pos-1"), ("principal", "staff-1")
    }  # fmt: skip
    assert (await r.client.post("/v1/redemptions/lockouts/store/m-1:s-1/unlock", headers=MERCHANT)).status_code == 403
    for scope, key in (("store", "m-1:s-1"), ("device", "m-1:s-1:pos-1"), ("principal", "staff-1")):
        assert (await r.client.post(f"/v1/redemptions/lockouts/{scope}/{key}/unlock", headers=OPS)).status_code == 200
    r.clock.advance(timedelta(seconds=1))
    assert (await r.redeem(code=digits, device_id="pos-1")).status_code == 201
    # Earlier failures stopped counting at the unlock: one more miss does not lock again.
    assert (await r.redeem(code=unknown, device_id="pos-1")).status_code == 404
    assert (await r.client.get("/v1/redemptions/lockouts", headers=OPS)).json() == []
    # Locks also lapse by themselves.
    for _ in range(4):
        await r.redeem(code=unknown, device_id="pos-1")
    assert (await r.redeem(code=unknown, device_id="pos-1")).status_code == 423
    r.clock.advance(timedelta(minutes=31))
    assert (await r.redeem(code=unknown, device_id="pos-1")).status_code == 404


async def test_a_reversal_works_inside_its_window_only(redemption: RedemptionHarness) -> None:
    r = redemption
    digits = _digits(await r.order_paid("o-1"))
    redeemed = (await r.redeem(code=digits)).json()
    r.clock.advance(timedelta(minutes=59))
    reversed_ = await r.client.post(
        f"/v1/redemptions/{redeemed['id']}/reverse", json={"reason": "扫错了"}, headers=MERCHANT
    )
    assert reversed_.status_code == 200
    assert reversed_.json()["reversed_at"]
    assert await r.sql("SELECT status, uses_left, cycles FROM code") == [("active", 1, 1)]
    twice = await r.client.post(f"/v1/redemptions/{redeemed['id']}/reverse", json={"reason": "x"}, headers=MERCHANT)
    assert twice.status_code == 409
    again = (await r.redeem(code=digits)).json()
    r.clock.advance(timedelta(minutes=61))
    late = await r.client.post(f"/v1/redemptions/{again['id']}/reverse", json={"reason": "late"}, headers=MERCHANT)
    assert (late.status_code, late.json()["reason"]) == (409, "window-passed")
    other = await r.client.post(f"/v1/redemptions/{again['id']}/reverse", json={"reason": "x"}, headers=OTHER_MERCHANT)
    assert other.status_code == 404
    types = [t for (t,) in await r.sql("SELECT type FROM outbox ORDER BY id")]
    assert types == ["code.issued.v1", "code.redeemed.v1", "code.reversed.v1", "code.redeemed.v1"]


async def test_stolen_codes_are_frozen_and_reissued(redemption: RedemptionHarness) -> None:
    r = redemption
    code = await r.order_paid("o-1")
    frozen = await r.client.post(f"/v1/codes/{code['id']}/freeze", json={"reason": "截图被盗"}, headers=CUSTOMER)
    assert frozen.json()["status"] == "frozen"
    refused = await r.redeem(code=_digits(code))
    assert (refused.status_code, refused.json()["type"]) == (409, "/problems/code-frozen")
    new = await r.client.post(f"/v1/codes/{code['id']}/reissue", headers=CUSTOMER)
    assert new.status_code == 201
    new_code = new.json()
    assert new_code["replaces"] == code["id"]
    assert new_code["code"] != code["code"]
    old = await r.redeem(code=_digits(code))
    assert (old.json()["type"], old.json()["replaced"]) == ("/problems/code-revoked", True)
    assert (await r.redeem(code=_digits(new_code), store_id="s-2")).json()["type"] == "/problems/forbidden"
    wrong_store = await r.redeem(code=_digits(new_code), store_id="s-2", headers=OPS)
    assert (wrong_store.status_code, wrong_store.json()["type"]) == (409, "/problems/wrong-store")
    assert (await r.redeem(code=_digits(new_code))).status_code == 201
    assert (await r.client.post(f"/v1/codes/{code['id']}/revoke", json={}, headers=CUSTOMER)).status_code in (403, 409)


async def test_codes_follow_the_order_and_expire_on_time(redemption: RedemptionHarness) -> None:
    r = redemption
    cancelled = await r.order_paid("o-1")
    await r.order_event("order.cancelled.v1", "o-1", reason="rejected")
    assert (await r.redeem(code=_digits(cancelled))).json()["type"] == "/problems/code-revoked"
    finish = await r.order_paid("o-2", mode="delivery")
    assert finish["kind"] == "finish"
    handed_over = await r.redeem(
        code=_digits(finish), headers=RIDER | r.handover("o-2"), store_id=None, lat=39.91, lng=116.40
    )
    assert handed_over.status_code == 201
    assert (await r.order_paid("o-3", mode="express")) == {}  # express needs no code
    late = await r.order_paid("o-4")
    r.clock.advance(timedelta(hours=72))
    assert await r.timers.fire_due() >= 1
    assert (await r.redeem(code=_digits(late))).json()["type"] == "/problems/code-expired"
    redeemed = [
        row
        for row in await r.sql(
            "SELECT data FROM (SELECT envelope->'data' AS data, type FROM outbox) e WHERE type = 'code.redeemed.v1'"
        )
    ]
    assert redeemed[0][0]["kind"] == "finish"
    assert redeemed[0][0]["order_id"] == "o-2"


async def test_the_audit_log_holds_every_attempt(redemption: RedemptionHarness) -> None:
    r = redemption
    digits = _digits(await r.order_paid("o-1"))
    await r.redeem(code=digits, device_id="pos-1", lat=39.9, lng=116.4)
    await r.redeem(code=digits, device_id="pos-1")
    await r.redeem(code="1234", device_id="pos-2")
    await r.redeem(code=digits, request_no="req-000001")  # a replay of the first
    await r.client.post("/v1/redemptions/preview", json={"code": digits, "store_id": "s-1"}, headers=MERCHANT)
    log = (await r.client.get("/v1/redemptions/attempts?store_id=s-1", headers=MERCHANT)).json()
    assert log["total"] == 5
    assert [(a["action"], a["result"], a["failed"]) for a in reversed(log["items"])] == [
        ("verify", "redeemed", False),
        ("verify", "already-redeemed", False),
        ("verify", "check-digit-failed", True),
        ("verify", "replayed", False),
        ("preview", "previewed", False),
    ]
    first = log["items"][-1]
    assert (first["principal"], first["device_id"], first["lat"], first["ip"]) == (
        "staff-1",
        "pos-1",
        39.9,
        "127.0.0.1",
    )
    assert digits not in str(log)  # codes are masked in the log
    assert (await r.client.get("/v1/redemptions/attempts", headers=OTHER_MERCHANT)).json()["total"] == 0
    assert (await r.client.get("/v1/redemptions/attempts", headers=OPS)).json()["total"] == 5


async def test_a_code_allows_a_limited_number_of_redeem_and_reverse_cycles(redemption: RedemptionHarness) -> None:
    r = redemption
    digits = _digits(await r.order_paid("o-1"))
    for cycle in range(10):
        redeemed = (await r.redeem(code=digits)).json()
        undo = await r.client.post(
            f"/v1/redemptions/{redeemed['id']}/reverse", json={"reason": f"#{cycle}"}, headers=MERCHANT
        )
        assert undo.status_code == 200
    last = (await r.redeem(code=digits)).json()
    refused = await r.client.post(f"/v1/redemptions/{last['id']}/reverse", json={"reason": "11th"}, headers=MERCHANT)
    assert (refused.status_code, refused.json()["reason"]) == (409, "too-many-cycles")
    assert await r.sql("SELECT status, cycles FROM code") == [("redeemed", 10)]


async def test_a_pickup_code_is_issued_only_once_the_merchant_accepts(redemption: RedemptionHarness) -> None:
    r = redemption
    # Paid, not accepted: no code to redeem, so an order refunded at the accept deadline never handed goods over.
    assert await r.order_paid("o-1", accepted=False) == {}
    await r.order_event("order.cancelled.v1", "o-1", reason="not accepted in time")
    assert (await r.client.get("/v1/codes?order_id=o-1", headers=OPS)).json()["total"] == 0
    # Accepted: the customer gets the code, and it redeems.
    assert await r.order_paid("o-2", accepted=False) == {}
    code = await r.order_paid("o-2")
    assert code["kind"] == "pickup"
    assert (await r.redeem(code=_digits(code))).status_code == 201
