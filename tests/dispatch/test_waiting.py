"""A delivery waiting for a rider, and who may look at one: escalation after a carrier's rider withdrew, riders
seeing only their own merchant's own-fleet deliveries, and tracking without holding the delivery's row lock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploy.local.sandboxes.carriers.simulator import RIDERS
from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import Op
from tests.dispatch.conftest import MERCHANT, DispatchHarness, dispatch_stack
from tests.dispatch.test_carriers import _creds
from tests.support import bearer, holding_relay, serve


async def _report(
    dispatch: DispatchHarness, carrier: str, offer: dict[str, Any], step: str, ago: int, rider: int = 1
) -> None:
    """The carrier calls back `ago` seconds after the fact, signed with the account's secret, as its simulator
    would."""
    wire = WIRES[carrier]
    creds = _creds(carrier, dispatch.accounts[carrier])
    when = datetime.now(UTC) - timedelta(seconds=ago)
    fields: dict[str, Any] = {
        "shop_order_id": offer["shop_order_id"], "waybill_id": offer["waybill_id"], "status": wire.emits[step],
        "action_time": int(when.timestamp()), "shop_id": creds.shop_id,
    }  # fmt: skip
    if step != "withdrawn":
        name, phone = RIDERS[rider]
        fields |= {"rider_id": f"r{rider}", "rider_name": name, "rider_phone": phone}
    message = wire.encode_callback(creds, fields, when)
    answer = await dispatch.client.post(
        f"/v1/carriers/{carrier}/callback",
        params=dict(message.params),
        content=message.body,
        headers={"Content-Type": message.content_type},
    )
    assert answer.status_code == 200, answer.text
    await dispatch.fire()


async def _placed(dispatch: DispatchHarness, carrier: str, strategy: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A delivery offered to `carrier`, whose simulator takes its time (we report for it)."""
    await dispatch.bind(carrier)
    await dispatch.bind("shansong")
    order_id = await dispatch.order_ready(note="sim:slow_accept", strategy=strategy)
    await dispatch.fire()
    offer = (await dispatch.delivery(order_id))["offers"][0]
    assert offer["carrier"] == carrier
    return order_id, offer


async def _withdrawn(dispatch: DispatchHarness, strategy: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A delivery SF took and whose rider then withdrew: SF is looking again."""
    order_id, offer = await _placed(dispatch, "sf", strategy)
    await _report(dispatch, "sf", offer, "rider_assigned", ago=20)
    assert (await dispatch.delivery(order_id))["status"] == "rider_assigned"
    await _report(dispatch, "sf", offer, "withdrawn", ago=10)
    delivery = await dispatch.delivery(order_id)
    assert (delivery["status"], delivery["rider"]) == ("created", None)
    return order_id, offer


async def test_a_delivery_whose_rider_withdrew_keeps_escalating(dispatch: DispatchHarness) -> None:
    strategy = {"kind": "preferred", "carriers": ["sf", "shansong"], "max_tip_fen": 300, "escalate_after_minutes": 5}
    order_id, sf = await _withdrawn(dispatch, strategy)
    delivery_id = (await dispatch.delivery(order_id))["id"]
    tip = await dispatch.client.post(f"/v1/deliveries/{delivery_id}/tip", json={"tip_fen": 100}, headers=MERCHANT)
    assert tip.status_code == 200, tip.text
    assert tip.json()["tip_fen"] == 100
    dispatch.clock.advance(timedelta(minutes=5, seconds=1))
    await dispatch.fire()
    assert (await dispatch.delivery(order_id))["tip_fen"] == 300  # a step up, capped
    at_sf = (await dispatch.sim.get(f"/_sim/orders/sf/{sf['shop_order_id']}")).json()
    assert at_sf["tip_fen"] == 300
    dispatch.clock.advance(timedelta(minutes=5, seconds=1))
    await dispatch.fire()
    delivery = await dispatch.delivery(order_id)
    offers = {o["carrier"]: o for o in delivery["offers"]}
    assert (offers["sf"]["status"], offers["shansong"]["status"]) == ("cancelled", "placed")
    assert (delivery["status"], delivery["carrier"], delivery["ended_at"]) == ("created", None, None)
    assert (await dispatch.sim.get(f"/_sim/orders/sf/{sf['shop_order_id']}")).json()["cancelled"] is True
    assert [h["code"] for h in delivery["history"] if h["source"] == "system"] == ["tip", "tip", "redispatch"]
    # Shansong's rider takes it: the delivery is Shansong's now, and SF's late word counts for nothing.
    await _report(dispatch, "shansong", offers["shansong"], "rider_assigned", ago=5)
    delivery = await dispatch.delivery(order_id)
    assert (delivery["status"], delivery["carrier"]) == ("rider_assigned", "shansong")
    await _report(dispatch, "sf", sf, "rider_assigned", ago=1)
    assert (await dispatch.delivery(order_id))["carrier"] == "shansong"


async def test_a_rider_sees_only_own_fleet_deliveries_of_their_merchant_carried_by_them(
    dispatch: DispatchHarness,
) -> None:
    order_id, offer = await _placed(dispatch, "uu", {"kind": "preferred", "carriers": ["uu"]})
    await _report(dispatch, "uu", offer, "rider_assigned", ago=5)
    delivery = await dispatch.delivery(order_id)
    assert delivery["rider"]["id"] == "r1"
    # A Songda rider whose token subject equals the carrier's rider id, of this merchant or another.
    for rider in (bearer("rider", "r1", "m-1"), bearer("rider", "r1", "m-2")):
        listed = (await dispatch.client.get(f"/v1/deliveries?order_id={order_id}", headers=rider)).json()
        assert listed["total"] == 0
        for path in ("", "/track"):
            one = await dispatch.client.get(f"/v1/deliveries/{delivery['id']}{path}", headers=rider)
            assert one.status_code == 404
    # Own-fleet deliveries assigned to a rider under another merchant's name stay hidden from them too.
    await dispatch.sql(
        "UPDATE delivery SET carrier = 'own_fleet', rider = '{\"id\": \"r1\"}'::jsonb WHERE order_id = :o", o=order_id
    )
    other_merchant = bearer("rider", "r1", "m-2")
    assert (await dispatch.client.get(f"/v1/deliveries/{delivery['id']}", headers=other_merchant)).status_code == 404
    own = await dispatch.client.get(f"/v1/deliveries/{delivery['id']}", headers=bearer("rider", "r1", "m-1"))
    assert own.status_code == 200
    assert own.json()["candidates"] is None


async def test_a_riders_tasks_are_those_of_the_merchant_their_token_names(dispatch: DispatchHarness) -> None:
    rider = bearer("rider", "rider-near", "m-1")
    await dispatch.client.put("/v1/riders/me", json={"name": "近", "phone": "13700000000"}, headers=rider)
    await dispatch.client.post("/v1/riders/me/online", headers=rider)
    await dispatch.client.post("/v1/riders/me/location", json={"lat": 39.9097, "lng": 116.3975}, headers=rider)
    order_id = await dispatch.order_ready(strategy={"kind": "own_fleet_first", "carriers": ["own_fleet"]})
    await dispatch.fire()
    mine = (await dispatch.client.get("/v1/riders/me/tasks", headers=rider)).json()
    assert [t["order_id"] for t in mine] == [order_id]
    # The same subject under another merchant's name sees none of m-1's customers.
    same_sub = bearer("rider", "rider-near", "m-2")
    assert (await dispatch.client.get("/v1/riders/me/tasks", headers=same_sub)).json() == []


@pytest.mark.parametrize(("route", "op"), [("track", Op.locate), ("cancel-preview", Op.preview_cancel)])
async def test_reading_routes_hold_no_lock_while_the_carrier_answers(
    dispatch_db_url: str, bootstrap: str, route: str, op: Op
) -> None:
    target: dict[str, str] = {}
    arrived, release = asyncio.Event(), asyncio.Event()
    held = "/sf" + WIRES["sf"].paths[op]
    async with (
        serve(holding_relay(target, held, arrived, release)) as relay_url,
        dispatch_stack(dispatch_db_url, bootstrap, {"carrier_sandbox_url": relay_url}) as dispatch,
    ):
        target["url"] = str(dispatch.sim.base_url).rstrip("/")
        order_id, _ = await _withdrawn(dispatch, {"kind": "preferred", "carriers": ["sf"]})
        delivery = await dispatch.delivery(order_id)
        await _report(dispatch, "sf", delivery["offers"][0], "rider_assigned", ago=5, rider=2)
        assert (await dispatch.delivery(order_id))["status"] == "rider_assigned"
        dispatch.clock.advance(timedelta(minutes=1))  # the last position is stale: tracking asks SF
        url = f"/v1/deliveries/{delivery['id']}/{route}"
        answering = asyncio.create_task(dispatch.client.get(url, headers=MERCHANT))
        try:
            await asyncio.wait_for(arrived.wait(), 20)
            # While SF thinks, the delivery's row is free, and no transaction of the service waits with it.
            locked = await dispatch.sql(
                "SELECT id FROM delivery WHERE id = :id FOR UPDATE NOWAIT", id=uuid.UUID(delivery["id"])
            )
            idle = await dispatch.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in%'"
            )
        finally:
            release.set()
        answer = await answering
    assert len(locked) == 1
    assert idle[0][0] == 0
    assert answer.status_code == 200
    if route == "track":
        assert (answer.json()["lat"], answer.json()["lng"]) != (None, None)
    else:
        assert answer.json()["offers"] == {"sf": answer.json()["deduct_fen"]}
