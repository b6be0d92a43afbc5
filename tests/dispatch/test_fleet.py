"""The own fleet: offers go to the nearest free online rider, one at a time; declined or expired offers go on to
the next; a rider sees and moves only their own tasks; the handover redeems, at the real redemption service, only
the finish code of the delivery the rider has picked up, each attempt under its own request number."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from deploy.local.ports import free_port
from services.dispatch.fleet import handover_request_no
from services.redemption.app import create_app as create_redemption
from shared.handover import HEADER, Voucher, VoucherSigner
from tests.dispatch.conftest import CUSTOMER, STORE, DispatchHarness, dispatch_stack
from tests.harness import served
from tests.redemption.conftest import RedemptionHarness, redemption_settings
from tests.support import HANDOVER_KEY, bearer, holding_relay, serve

NEAR = bearer("rider", "rider-near", "m-1")
FAR = bearer("rider", "rider-far", "m-1")
ELSEWHERE = bearer("rider", "rider-other", "m-2")
OWN_FLEET = {"kind": "own_fleet_first", "carriers": ["own_fleet"]}


async def _online(dispatch: DispatchHarness, headers: dict[str, str], lat: float, name: str) -> None:
    await dispatch.client.put("/v1/riders/me", json={"name": name, "phone": "13700000000"}, headers=headers)
    await dispatch.client.post("/v1/riders/me/online", headers=headers)
    response = await dispatch.client.post(
        "/v1/riders/me/location", json={"lat": lat, "lng": STORE["lng"]}, headers=headers
    )
    assert response.status_code == 200, response.text


async def _tasks(dispatch: DispatchHarness, headers: dict[str, str]) -> list[dict[str, object]]:
    return list((await dispatch.client.get("/v1/riders/me/tasks", headers=headers)).json())


async def test_nearest_rider_first_then_the_next_on_decline_or_timeout(dispatch: DispatchHarness) -> None:
    await _online(dispatch, NEAR, STORE["lat"] + 0.001, "近")
    await _online(dispatch, FAR, STORE["lat"] + 0.02, "远")
    await _online(dispatch, ELSEWHERE, STORE["lat"], "别家")
    first = await dispatch.order_ready(strategy=OWN_FLEET)
    await dispatch.fire()
    assert [t["order_id"] for t in await _tasks(dispatch, NEAR)] == [first]
    assert await _tasks(dispatch, FAR) == []
    assert await _tasks(dispatch, ELSEWHERE) == []  # another merchant's rider is never asked
    delivery_id = (await _tasks(dispatch, NEAR))[0]["delivery_id"]
    declined = await dispatch.client.post(f"/v1/riders/me/tasks/{delivery_id}/decline", headers=NEAR)
    assert declined.status_code == 204
    assert [t["order_id"] for t in await _tasks(dispatch, FAR)] == [first]
    dispatch.clock.advance(timedelta(seconds=61))  # the far rider lets it expire: nobody is left
    await dispatch.fire()
    ended = await dispatch.delivery(first)
    assert ended["status"] == "failed"
    assert ended["offers"][0]["error"] == "no own rider took the delivery"

    second = await dispatch.order_ready(strategy=OWN_FLEET)
    await dispatch.fire()
    task = (await _tasks(dispatch, NEAR))[0]
    assert task["order_id"] == second
    path = f"/v1/riders/me/tasks/{task['delivery_id']}"
    assert (await dispatch.client.post(f"{path}/pickup", headers=NEAR)).status_code == 404  # not theirs yet
    accepted = await dispatch.client.post(f"{path}/accept", headers=NEAR)
    assert accepted.json()["status"] == "rider_assigned"
    assert accepted.json()["rider"]["name"] == "近"
    again = await dispatch.client.post(f"{path}/accept", headers=FAR)
    assert again.status_code == 409
    assert (await dispatch.client.post(f"{path}/arrive", headers=FAR)).status_code == 404
    early = await dispatch.client.post(f"{path}/pickup", headers=NEAR)
    assert early.status_code == 409  # arrive first
    assert (await dispatch.client.post(f"{path}/arrive", headers=NEAR)).json()["status"] == "rider_at_store"
    assert (await dispatch.client.post(f"{path}/pickup", headers=NEAR)).json()["status"] == "picked_up"
    track = (
        await dispatch.client.get(
            f"/v1/deliveries/{task['delivery_id']}/track", headers=bearer("customer", "openid-alice")
        )
    ).json()
    assert track["rider"]["name"] == "近"
    assert track["eta_at"] is not None
    no_code = await dispatch.client.post(f"{path}/deliver", json={}, headers=NEAR)
    assert no_code.status_code == 422
    assert await dispatch.events(second) == [
        "delivery.created.v1", "delivery.rider_assigned.v1", "delivery.rider_at_store.v1", "delivery.picked_up.v1",
    ]  # fmt: skip


@pytest.fixture
async def fleet_with_redemption(
    dispatch_db_url: str, redemption_db_url: str, bootstrap: str
) -> AsyncIterator[tuple[DispatchHarness, RedemptionHarness]]:
    """Dispatch and the redemption service, each on its own port and on one clock, dispatch verifying handovers at
    the other."""
    port = free_port()
    async with dispatch_stack(dispatch_db_url, bootstrap, {"redemption_url": f"http://127.0.0.1:{port}"}) as dispatch:
        app = create_redemption(redemption_settings(redemption_db_url, bootstrap), clock=dispatch.clock)
        async with served(app, RedemptionHarness, port=port) as redemption:
            yield dispatch, redemption


async def test_the_handover_redeems_only_this_picked_up_deliverys_code_and_every_attempt_is_its_own(
    fleet_with_redemption: tuple[DispatchHarness, RedemptionHarness],
) -> None:
    dispatch, redemption = fleet_with_redemption
    await _online(dispatch, NEAR, STORE["lat"] + 0.001, "近")
    await _online(dispatch, FAR, STORE["lat"] + 0.02, "远")
    order_id = await dispatch.order_ready(strategy=OWN_FLEET)
    await dispatch.fire()
    task = (await _tasks(dispatch, NEAR))[0]
    path = f"/v1/riders/me/tasks/{task['delivery_id']}"
    mine = await redemption.order_paid(order_id, mode="delivery", store={"id": "s-1", "name": "面馆"})
    theirs = await redemption.order_paid("SD-next-door", mode="delivery")
    digits = str(mine["code"]).replace(" ", "")

    async def deliver(request_no: str, headers: dict[str, str] = NEAR, **presented: str) -> tuple[int, str]:
        response = await dispatch.client.post(
            f"{path}/deliver", json={"request_no": request_no, **presented}, headers=headers
        )
        return response.status_code, str(response.json().get("type") or response.json().get("status"))

    await dispatch.client.post(f"{path}/accept", headers=NEAR)
    await dispatch.client.post(f"{path}/arrive", headers=NEAR)
    assert await deliver("attempt-1", code=digits) == (409, "/problems/wrong-step")  # not picked up yet
    await dispatch.client.post(f"{path}/pickup", headers=NEAR)
    assert await deliver("attempt-2", FAR, code=digits) == (404, "/problems/task-not-found")  # another rider
    assert await deliver("attempt-3", code=digits[:-1] + str((int(digits[-1]) + 1) % 10)) == (
        422, "/problems/check-digit-failed"
    )  # fmt: skip
    wrong_door = str(theirs["code"]).replace(" ", "")
    assert await deliver("attempt-4", code=wrong_door) == (409, "/problems/wrong-order")
    stale = mine["qr_token"]
    dispatch.clock.advance(timedelta(seconds=90))
    assert await deliver("attempt-5", qr_token=stale) == (422, "/problems/token-not-valid")
    assert await redemption.sql("SELECT count(*) FROM redemption") == [(0,)]
    # The next attempt reaches the redemption service, which redeems, but the answer is lost (dispatch timed out):
    # the rider app retries the same attempt and gets the same answer; the delivery is delivered once.
    fresh = (await redemption.client.get(f"/v1/codes/{mine['id']}", headers=CUSTOMER)).json()["qr_token"]
    voucher = Voucher("rider-near", "m-1", str(task["delivery_id"]), order_id)
    lost = await redemption.client.post(
        "/v1/redemptions",
        json={"request_no": handover_request_no(uuid.UUID(str(task["delivery_id"])), "attempt-6"), "qr_token": fresh},
        headers=NEAR | {HEADER: VoucherSigner(HANDOVER_KEY, 60).sign(voucher, dispatch.clock.now())},
    )
    assert lost.status_code == 201
    assert await deliver("attempt-6", qr_token=fresh) == (200, "delivered")
    assert await deliver("attempt-6", qr_token=fresh) == (200, "delivered")
    assert await redemption.sql("SELECT count(*) FROM redemption") == [(1,)]
    assert await redemption.sql("SELECT order_id, status FROM code ORDER BY order_id") == [
        ("SD-next-door", "active"), (order_id, "redeemed")
    ]  # fmt: skip
    assert (await dispatch.events(order_id))[-1] == "delivery.delivered.v1"


async def test_a_slow_redemption_service_holds_no_lock_on_the_delivery(
    dispatch_db_url: str, redemption_db_url: str, bootstrap: str
) -> None:
    target: dict[str, str] = {}
    arrived, release = asyncio.Event(), asyncio.Event()
    async with (
        serve(holding_relay(target, "/v1/redemptions", arrived, release)) as relay_url,
        dispatch_stack(dispatch_db_url, bootstrap, {"redemption_url": relay_url}) as dispatch,
    ):
        app = create_redemption(redemption_settings(redemption_db_url, bootstrap), clock=dispatch.clock)
        async with served(app, RedemptionHarness) as redemption:
            target["url"] = str(redemption.client.base_url).rstrip("/")
            await _online(dispatch, NEAR, STORE["lat"] + 0.001, "近")
            order_id = await dispatch.order_ready(strategy=OWN_FLEET)
            await dispatch.fire()
            task = (await _tasks(dispatch, NEAR))[0]
            path = f"/v1/riders/me/tasks/{task['delivery_id']}"
            for step in ("accept", "arrive", "pickup"):
                assert (await dispatch.client.post(f"{path}/{step}", headers=NEAR)).status_code == 200
            code = await redemption.order_paid(order_id, mode="delivery")
            digits = str(code["code"]).replace(" ", "")
            delivering = asyncio.create_task(
                dispatch.client.post(f"{path}/deliver", json={"request_no": "attempt-1", "code": digits}, headers=NEAR)
            )
            try:
                await asyncio.wait_for(arrived.wait(), 20)
                # While the redemption service thinks, the delivery's row is free for callbacks and timers.
                locked = await dispatch.sql(
                    "SELECT id FROM delivery WHERE id = :id FOR UPDATE NOWAIT", id=uuid.UUID(task["delivery_id"])
                )
            finally:
                release.set()
            answer = await delivering
            assert len(locked) == 1
            assert answer.status_code == 200, answer.text
            assert (await dispatch.delivery(order_id))["status"] == "delivered"


async def test_a_carrying_riders_location_is_told_at_most_every_few_seconds(dispatch: DispatchHarness) -> None:
    await _online(dispatch, NEAR, STORE["lat"] + 0.001, "近")
    order_id = await dispatch.order_ready(strategy=OWN_FLEET)
    await dispatch.fire()
    task = (await _tasks(dispatch, NEAR))[0]
    await dispatch.client.post(f"/v1/riders/me/tasks/{task['delivery_id']}/accept", headers=NEAR)

    async def report(lat: float) -> None:
        response = await dispatch.client.post("/v1/riders/me/location", json={"lat": lat, "lng": STORE["lng"]},
                                              headers=NEAR)  # fmt: skip
        assert response.status_code == 200, response.text

    dispatch.clock.advance(timedelta(seconds=11))
    await report(STORE["lat"] + 0.0005)
    await report(STORE["lat"] + 0.0004)  # a second later: not told again
    dispatch.clock.advance(timedelta(seconds=11))
    await report(STORE["lat"] + 0.0003)
    located = await dispatch.outbox("delivery.location.v1")
    assert len(located) == 2
    assert [e["data"]["lat"] for e in located] == [STORE["lat"] + 0.0005, STORE["lat"] + 0.0003]
    assert all(e["subject"] == order_id and e["data"]["eta"] for e in located)
    await _online(dispatch, FAR, STORE["lat"] + 0.02, "远")  # a rider carrying nothing tells nothing
    assert len(await dispatch.outbox("delivery.location.v1")) == 2
