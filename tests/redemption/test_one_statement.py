"""A redemption that nothing stands in the way of is one statement (`redeem_code`), with no BEGIN or COMMIT around
it; a QR token's one more (its code's secret). Statements are counted as the service's
engine sends them, on real PostgreSQL."""

from __future__ import annotations

from services.redemption import events as redemption_events
from tests.redemption.conftest import CUSTOMER, RIDER, RedemptionHarness
from tests.support import statements


async def test_a_redemption_is_one_statement_and_a_qr_redemption_two(redemption: RedemptionHarness) -> None:
    r = redemption
    voucher = await r.voucher(uses=5)
    with statements(r.sessionmaker) as sent:
        first = await r.redeem(code=voucher["code"], device_id="pos-1")
    assert first.status_code == 201, first.text
    assert [statement.split("(")[0] for statement in sent] == ["SELECT redeem_code"]
    with statements(r.sessionmaker) as sent:
        by_qr = await r.redeem(qr_token=voucher["qr_token"], count=2)
    assert (by_qr.status_code, by_qr.json()["uses_left"]) == (201, 2)
    assert len(sent) == 2
    # What the statement wrote is what the full path writes: ledger, audit, answer (replayed as given), event.
    replay = await r.redeem(code=voucher["code"], device_id="pos-1", request_no="req-000001")
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert first.json() | {"summary": None} == {
        "id": first.json()["id"], "code_id": voucher["id"], "kind": "voucher", "order_id": None, "store_id": "s-1",
        "count": 1, "uses_left": 4, "status": "active", "redeemed_at": "2026-11-18T04:00:07+00:00",
        "redeemed_by": "merchant:staff-1", "reversed_at": None, "summary": None,
    }  # fmt: skip
    ledger = await r.sql("SELECT count, principal, device_id, request_no FROM redemption ORDER BY count")
    assert ledger == [(1, "merchant:staff-1", "pos-1", "req-000001"), (2, "merchant:staff-1", None, "req-000002")]
    assert await r.sql("SELECT result, presented, code_id::text FROM attempt WHERE action = 'verify' ORDER BY id") == [
        ("redeemed", voucher["code"][:2] + "******" + voucher["code"][-4:], voucher["id"]),
        ("redeemed", "qr", voucher["id"]),
        ("replayed", voucher["code"][:2] + "******" + voucher["code"][-4:], None),
    ]  # fmt: skip
    events = await r.sql("SELECT key, envelope FROM outbox WHERE type = 'code.redeemed.v1' ORDER BY id")
    assert [key for key, _ in events] == [voucher["id"], voucher["id"]]
    envelope = events[0][1]
    assert (envelope["subject"], envelope["source"]) == (voucher["id"], "redemption")
    assert envelope["data"] == {
        "code_id": voucher["id"], "kind": "voucher", "order_id": None, "merchant_id": "m-1", "store_id": "s-1",
        "customer_id": "openid-alice", "status": "active", "uses_total": 5, "uses_left": 4,
        "valid_until": "2026-12-31T16:00:00+00:00", "redemption_id": first.json()["id"], "count": 1,
        "redeemed_by": "merchant:staff-1", "device_id": "pos-1",
    }  # fmt: skip
    # The database writes the event the model describes: the one-statement path is held to the contract too.
    redeemed = redemption_events.PUBLISHED[redemption_events.REDEEMED].model_validate(envelope["data"])
    assert redeemed.model_dump(mode="json") == envelope["data"]


async def test_whoever_may_not_redeem_the_code_gets_the_full_paths_answer(redemption: RedemptionHarness) -> None:
    r = redemption
    voucher = await r.voucher(uses=5)
    other_store = await r.redeem(code=voucher["code"], store_id="s-2")
    assert (other_store.status_code, other_store.json()["type"]) == (403, "/problems/forbidden")
    rider = await r.redeem(code=voucher["code"], headers=RIDER, store_id=None)
    assert (rider.status_code, rider.json()["type"]) == (403, "/problems/handover-required")
    customer = await r.redeem(code=voucher["code"], headers=CUSTOMER)
    assert customer.status_code == 403
    assert await r.sql("SELECT uses_left FROM code") == [(5,)]
