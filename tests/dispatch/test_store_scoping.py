"""Store scoping in dispatch: staff of store s-1 (a token listing `store_ids`) reach neither the carrier accounts nor
the deliveries of s-2, another store of their merchant; another merchant reaches neither; both read as absent."""

from __future__ import annotations

from tests.dispatch.conftest import MERCHANT, OTHER_MERCHANT, STORE, DispatchHarness
from tests.support import bearer

OWNER = bearer("merchant", "owner", "m-1")  # merchant-wide: every store of m-1
NO_MERCHANT = bearer("merchant", "staff-9")  # names no merchant


async def test_store_scoped_staff_reach_only_their_stores_carrier_accounts(dispatch: DispatchHarness) -> None:
    await dispatch.bind("sf")
    theirs = await dispatch.bind("dada", store_id="s-2", headers=OWNER)
    account = (await dispatch.sim.post("/_sim/accounts", json={"carrier": "sf"})).json()
    body = {"store_id": "s-2", "carrier": "sf", **{k: account[k] for k in
            ("app_key", "app_secret", "shop_id", "merchant_no", "token")}}  # fmt: skip
    bound = await dispatch.client.post("/v1/carriers/accounts", json=body, headers=MERCHANT)
    assert bound.status_code == 404
    assert (await dispatch.client.post("/v1/carriers/accounts", json=body, headers=NO_MERCHANT)).status_code == 403

    listed = {
        name: await dispatch.client.get("/v1/carriers/accounts?store_id=s-2", headers=headers)
        for name, headers in {"staff of s-1": MERCHANT, "owner": OWNER, "other merchant": OTHER_MERCHANT}.items()
    }
    assert {name: r.status_code for name, r in listed.items()} == {
        "staff of s-1": 404, "owner": 200, "other merchant": 200
    }  # fmt: skip
    assert [a["carrier"] for a in listed["owner"].json()] == ["dada"]
    assert listed["other merchant"].json() == []  # m-2 has no store s-2 accounts; m-1's stay invisible

    unbind = f"/v1/carriers/accounts/{theirs['id']}"
    for headers in (MERCHANT, OTHER_MERCHANT):
        assert (await dispatch.client.delete(unbind, headers=headers)).status_code == 404
    assert (await dispatch.client.delete(unbind, headers=NO_MERCHANT)).status_code == 403
    still = (await dispatch.client.get("/v1/carriers/accounts?store_id=s-2", headers=OWNER)).json()
    assert [a["id"] for a in still] == [theirs["id"]]
    assert (await dispatch.client.delete(unbind, headers=OWNER)).status_code == 204


async def test_store_scoped_staff_see_and_act_on_only_their_stores_deliveries(dispatch: DispatchHarness) -> None:
    await dispatch.bind("sf")
    await dispatch.bind("sf", store_id="s-2", headers=OWNER)
    mine = await dispatch.order_ready(note="sim:slow_accept")
    theirs = await dispatch.order_ready(note="sim:slow_accept", store_id="s-2")
    await dispatch.fire()

    async def orders_seen(headers: dict[str, str]) -> list[str]:
        page = await dispatch.client.get("/v1/deliveries", headers=headers)
        assert page.status_code == 200, page.text
        return sorted(d["order_id"] for d in page.json()["items"])

    assert await orders_seen(OWNER) == sorted([mine, theirs])
    assert await orders_seen(MERCHANT) == [mine]
    assert await orders_seen(OTHER_MERCHANT) == []
    assert (await dispatch.client.get("/v1/deliveries", headers=NO_MERCHANT)).status_code == 403

    page = (await dispatch.client.get(f"/v1/deliveries?order_id={theirs}", headers=OWNER)).json()
    delivery_id = page["items"][0]["id"]
    for headers in (MERCHANT, OTHER_MERCHANT):
        assert (await dispatch.client.get(f"/v1/deliveries/{delivery_id}", headers=headers)).status_code == 404
        preview = await dispatch.client.get(f"/v1/deliveries/{delivery_id}/cancel-preview", headers=headers)
        assert preview.status_code == 404
        tip = await dispatch.client.post(f"/v1/deliveries/{delivery_id}/tip", json={"tip_fen": 900}, headers=headers)
        assert tip.status_code == 404
        cancel = await dispatch.client.post(
            f"/v1/deliveries/{delivery_id}/cancel", json={"reason": "not mine"}, headers=headers
        )
        assert cancel.status_code == 404
        again = await dispatch.client.post("/v1/deliveries", json={"order_id": theirs}, headers=headers)
        assert again.status_code == 404
    detail = (await dispatch.client.get(f"/v1/deliveries/{delivery_id}", headers=OWNER)).json()
    assert detail["tip_fen"] == 0
    assert detail["status"] not in ("cancelled", "failed")


async def test_a_rider_sees_only_the_own_fleet_deliveries_it_carries(dispatch: DispatchHarness) -> None:
    rider = bearer("rider", "rider-near", "m-1")
    await dispatch.client.put("/v1/riders/me", json={"name": "近", "phone": "13700000000"}, headers=rider)
    await dispatch.client.post("/v1/riders/me/online", headers=rider)
    located = await dispatch.client.post(
        "/v1/riders/me/location", json={"lat": STORE["lat"], "lng": STORE["lng"]}, headers=rider
    )
    assert located.status_code == 200, located.text
    own = await dispatch.order_ready(strategy={"kind": "own_fleet_first", "carriers": ["own_fleet"]})
    await dispatch.fire()
    [task] = (await dispatch.client.get("/v1/riders/me/tasks", headers=rider)).json()
    accepted = await dispatch.client.post(f"/v1/riders/me/tasks/{task['delivery_id']}/accept", headers=rider)
    assert accepted.status_code == 200, accepted.text

    await dispatch.bind("shansong")  # Shansong names its rider by id, in a signed callback
    by_carrier = await dispatch.order_ready(note="sim:normal")
    carried = await dispatch.settle(by_carrier, "delivered")
    carrier_rider = carried["rider"]["id"]
    # Riders whose id is the carrier rider's, in this merchant and another: the carrier's delivery is not theirs.
    for lookalike in (bearer("rider", carrier_rider, "m-1"), bearer("rider", carrier_rider, "m-2")):
        assert (await dispatch.client.get("/v1/deliveries", headers=lookalike)).json()["items"] == []
        assert (await dispatch.client.get(f"/v1/deliveries/{carried['id']}", headers=lookalike)).status_code == 404
        track = await dispatch.client.get(f"/v1/deliveries/{carried['id']}/track", headers=lookalike)
        assert track.status_code == 404
    assert [d["order_id"] for d in (await dispatch.client.get("/v1/deliveries", headers=rider)).json()["items"]] == [
        own
    ]
    assert (await dispatch.client.get("/v1/deliveries", headers=bearer("rider", "rider-x"))).status_code == 403


async def test_a_tracking_links_principal_sees_only_its_orders_delivery(dispatch: DispatchHarness) -> None:
    await dispatch.bind("sf")
    linked = await dispatch.order_ready(note="sim:slow_accept")
    other = await dispatch.order_ready(note="sim:slow_accept")  # the same customer's
    await dispatch.fire()
    tracking = bearer("customer", "openid-alice", "m-1", order_id=linked)
    customer = bearer("customer", "openid-alice")

    async def orders_seen(path: str, headers: dict[str, str]) -> list[str]:
        page = await dispatch.client.get(path, headers=headers)
        assert page.status_code == 200, page.text
        return sorted(d["order_id"] for d in page.json()["items"])

    assert await orders_seen("/v1/deliveries", customer) == sorted([linked, other])
    assert await orders_seen("/v1/deliveries", tracking) == [linked]
    assert await orders_seen(f"/v1/deliveries?order_id={other}", tracking) == []
    [theirs] = (await dispatch.client.get(f"/v1/deliveries?order_id={other}", headers=customer)).json()["items"]
    assert (await dispatch.client.get(f"/v1/deliveries/{theirs['id']}", headers=tracking)).status_code == 404
    assert (await dispatch.client.get(f"/v1/deliveries/{theirs['id']}/track", headers=tracking)).status_code == 404
    [mine] = (await dispatch.client.get(f"/v1/deliveries?order_id={linked}", headers=tracking)).json()["items"]
    assert (await dispatch.client.get(f"/v1/deliveries/{mine['id']}/track", headers=tracking)).status_code == 200
