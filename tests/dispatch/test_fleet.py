"""The own fleet: offers go to the nearest free online rider, one at a time; declined or expired offers go on to
the next; a rider sees and moves only their own tasks. (The handover with the customer's finish code, verified by
the redemption service, runs end to end through the gateway in the stack smoke test.)"""

from __future__ import annotations

from datetime import timedelta

from tests.dispatch.conftest import STORE, DispatchHarness
from tests.support import bearer

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
