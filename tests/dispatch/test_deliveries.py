"""Deliveries end to end against the simulator: an order event creates the delivery, the strategy picks the
carrier, the simulator calls back (signed) and the guard moves the delivery; events land in the outbox once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploy.local.sandboxes.carriers.scenarios import CHAOS, expected_end
from services.dispatch.carriers import WIRES
from shared.events.envelope import new_event
from tests.dispatch.conftest import CUSTOMER, MERCHANT, OPS, OTHER_MERCHANT, DispatchHarness, dispatch_stack
from tests.support import eventually


async def test_a_delivery_by_a_carrier_from_ready_to_delivered(dispatch: DispatchHarness) -> None:
    await dispatch.bind("sf")
    order_id = await dispatch.order_ready(note="sim:normal")
    delivery = await dispatch.settle(order_id, "delivered")
    assert delivery["carrier"] == "sf"
    assert delivery["fee_fen"] == 500 + 100 * 1  # 1.3 km
    assert delivery["rider"]["name"] == "张师傅"
    assert [h["status"] for h in delivery["history"] if h["verdict"] == "applied"] == [
        "rider_assigned", "rider_at_store", "delivering", "delivered",
    ]  # fmt: skip
    assert await dispatch.events(order_id) == [
        "delivery.created.v1", "delivery.rider_assigned.v1", "delivery.rider_at_store.v1",
        "delivery.delivering.v1", "delivery.delivered.v1",
    ]  # fmt: skip
    mine = (await dispatch.client.get(f"/v1/deliveries/{delivery['id']}", headers=CUSTOMER)).json()
    assert mine["status"] == "delivered"
    assert mine["offers"] is None
    assert mine["candidates"] is None
    other = await dispatch.client.get(f"/v1/deliveries/{delivery['id']}", headers=OTHER_MERCHANT)
    assert other.status_code == 404


async def test_cheapest_and_preferred_strategies_choose_by_quote_and_order(dispatch: DispatchHarness) -> None:
    for carrier in ("dada", "uu", "shansong"):
        await dispatch.bind(carrier)
    cheapest = await dispatch.order_ready(note="sim:slow_accept")
    await dispatch.fire()
    chosen = await dispatch.delivery(cheapest)
    quoted = chosen["candidates"]
    assert sorted(c["carrier"] for c in quoted) == ["dada", "shansong", "uu"]
    assert [(c["fee_fen"], c["eta_seconds"]) for c in quoted] == sorted(
        (c["fee_fen"], c["eta_seconds"]) for c in quoted
    )
    assert [o["carrier"] for o in chosen["offers"]] == [chosen["candidates"][0]["carrier"]]
    preferred = await dispatch.order_ready(
        note="sim:slow_accept", strategy={"kind": "preferred", "carriers": ["uu", "dada"]}
    )
    await dispatch.fire()
    assert [o["carrier"] for o in (await dispatch.delivery(preferred))["offers"]] == ["uu"]


async def test_create_failure_moves_on_to_the_next_carrier_then_fails(dispatch: DispatchHarness) -> None:
    await dispatch.bind("dada")
    await dispatch.bind("sf")
    order_id = await dispatch.order_ready(note="sim:create_fail")
    delivery = await dispatch.settle(order_id, "failed")
    assert sorted(o["status"] for o in delivery["offers"]) == ["failed", "failed"]
    assert await dispatch.events(order_id) == ["delivery.cancelled.v1"]


async def test_broadcast_has_exactly_one_winner_and_cancels_the_others(dispatch_db_url: str, bootstrap: str) -> None:
    # All four carriers' riders accept at the same instant; their riders then take 1 s a step, long enough for
    # the losers to be cancelled before pickup (a callback that arrives before the placements commit is refused and
    # retried by its carrier, which can delay the winner by most of a second).
    async with dispatch_stack(dispatch_db_url, bootstrap, step_seconds=1.0) as dispatch:
        for carrier in ("dada", "sf", "shansong", "uu"):
            await dispatch.bind(carrier)
        strategy = {"kind": "broadcast", "carriers": ["dada", "sf", "shansong", "uu"], "broadcast_count": 4}
        order_id = await dispatch.order_ready(note="sim:race", strategy=strategy)
        delivery = await dispatch.settle(order_id, "delivered")
        await _check_one_winner(dispatch, order_id, delivery)


async def _check_one_winner(dispatch: DispatchHarness, order_id: str, delivery: dict[str, Any]) -> None:
    offers = {o["carrier"]: o for o in delivery["offers"]}
    winners = [o for o in offers.values() if o["status"] == "won"]
    assert len(winners) == 1
    assert winners[0]["carrier"] == delivery["carrier"]
    losers = [o for o in offers.values() if o["status"] != "won"]
    assert len(losers) == 3
    assert all(o["cancel_fee_fen"] == 0 for o in losers)  # within every carrier's free-cancel window
    for loser in losers:
        view = (await dispatch.sim.get(f"/_sim/orders/{loser['carrier']}/{loser['shop_order_id']}")).json()
        assert view["cancelled"] is True
    assert (await dispatch.events(order_id)).count("delivery.rider_assigned.v1") == 1


async def test_escalation_raises_the_tip_then_redispatches(dispatch: DispatchHarness) -> None:
    await dispatch.bind("dada")
    await dispatch.bind("sf")
    strategy = {"kind": "preferred", "carriers": ["dada", "sf"], "max_tip_fen": 400, "escalate_after_minutes": 5}
    order_id = await dispatch.order_ready(note="sim:slow_accept", strategy=strategy)
    await dispatch.fire()
    tips = []
    for _ in range(3):
        dispatch.clock.advance(timedelta(minutes=5, seconds=1))
        await dispatch.fire()
        delivery = await dispatch.delivery(order_id)
        tips.append(delivery["tip_fen"])
    assert tips == [200, 400, 400]  # strictly up to the cap, then the next carrier
    offers = {o["carrier"]: o for o in delivery["offers"]}
    assert offers["dada"]["status"] == "cancelled"
    assert offers["dada"]["tip_fen"] == 400
    assert offers["sf"]["status"] == "placed"
    dada = (await dispatch.sim.get(f"/_sim/orders/dada/{offers['dada']['shop_order_id']}")).json()
    assert dada["tip_fen"] == 400
    assert dada["cancelled"] is True
    assert [h["code"] for h in delivery["history"] if h["source"] == "system"] == ["tip", "tip", "redispatch"]
    polled = [h for h in delivery["history"] if h["source"] == "poll"]
    assert polled  # ten silent minutes: reconciliation asked Dada, which said it was still looking
    assert polled[0]["verdict"] == "duplicate"
    low = await dispatch.client.post(f"/v1/deliveries/{delivery['id']}/tip", json={"tip_fen": 400}, headers=MERCHANT)
    assert low.status_code == 409
    assert low.json()["type"] == "/problems/tip-not-higher"
    high = await dispatch.client.post(f"/v1/deliveries/{delivery['id']}/tip", json={"tip_fen": 600}, headers=MERCHANT)
    assert high.status_code == 200
    assert high.json()["tip_fen"] == 600


async def test_merchant_cancel_previews_and_records_the_fee(dispatch: DispatchHarness) -> None:
    await dispatch.bind("dada")
    order_id = await dispatch.order_ready(note="sim:carrier_cancel")
    delivery = await dispatch.settle(order_id, "cancelled")
    assert delivery["reason"] == "已取消"  # Dada's callbacks only prompt a query: its answer (its own words) applies
    again = await dispatch.client.post(f"/v1/deliveries/{delivery['id']}/cancel", json={}, headers=MERCHANT)
    assert again.status_code == 409
    redo = await dispatch.client.post("/v1/deliveries", json={"order_id": order_id}, headers=MERCHANT)
    assert redo.status_code == 201, redo.text
    second = await dispatch.settle(order_id, "cancelled")  # the same scenario plays again
    assert second["id"] != delivery["id"]
    waiting = await dispatch.order_ready(note="sim:slow_accept")
    await dispatch.fire()
    live = await dispatch.delivery(waiting)
    preview = await dispatch.client.get(f"/v1/deliveries/{live['id']}/cancel-preview", headers=MERCHANT)
    assert preview.json() == {"deduct_fen": 0, "offers": {"dada": 0}}  # no rider yet: free
    cancelled = await dispatch.client.post(
        f"/v1/deliveries/{live['id']}/cancel", json={"reason": "customer changed mind"}, headers=MERCHANT
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["offers"][0]["cancel_fee_fen"] == 0
    assert (await dispatch.events(waiting))[-1] == "delivery.cancelled.v1"


async def test_order_cancelled_cancels_the_delivery_at_the_carrier(dispatch: DispatchHarness) -> None:
    await dispatch.bind("shansong")
    order_id = await dispatch.order_ready(note="sim:slow_accept")
    await dispatch.fire()
    await dispatch.feed.deliver(
        new_event(
            "order.cancelled.v1", source="order", subject=order_id, data={"order_id": order_id}, clock=dispatch.clock
        )
    )
    delivery = await dispatch.delivery(order_id)
    assert delivery["status"] == "cancelled"
    offer = delivery["offers"][0]
    assert (await dispatch.sim.get(f"/_sim/orders/shansong/{offer['shop_order_id']}")).json()["cancelled"] is True


@pytest.mark.parametrize("scenario", CHAOS)
async def test_each_scenario_ends_where_it_should(dispatch: DispatchHarness, scenario: str) -> None:
    for carrier in WIRES:
        await dispatch.bind(carrier)
    orders = {}
    for carrier in WIRES:
        orders[carrier] = await dispatch.order_ready(
            note=f"sim:{scenario}", strategy={"kind": "preferred", "carriers": [carrier]}
        )
    await dispatch.fire()
    for carrier, order_id in orders.items():
        wire = WIRES[carrier]
        expected = expected_end(wire, scenario) if scenario != "create_fail" else None
        if expected is None:
            continue  # create_fail moves on to the other carriers: covered above
        delivery = await dispatch.settle(order_id, expected.value)
        assert delivery["carrier"] == carrier, (carrier, scenario)


async def test_a_thousand_deliveries_in_chaos_mode(dispatch_db_url: str, bootstrap: str) -> None:
    """Every delivery ends in the state its scenario implies; customer-facing events exactly once each."""
    # A callback that arrives before its placement committed is refused (404: no such offer yet) and retried, as
    # carriers do for hours; a batch of placements can hold the commit for seconds here.
    retries = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30]
    async with dispatch_stack(
        dispatch_db_url, bootstrap, scenario="chaos", step_seconds=0.05, retry_seconds=retries
    ) as dispatch:
        carriers = list(WIRES)
        for carrier in carriers:  # a store per carrier: each delivery meets exactly one carrier
            await dispatch.bind(carrier, store_id=f"s-{carrier}", headers=OPS, merchant_id="m-1")
        orders: dict[str, str] = {}
        stop = asyncio.Event()

        async def fire_timers() -> None:
            while not stop.is_set():
                # The simulator dates reports by the wall clock: keep ours up with it (reports from beyond now plus
                # the allowed skew are refused).
                dispatch.clock.set(max(dispatch.clock.now(), datetime.now(UTC)))
                if not await dispatch.timers.fire_due() + await dispatch.apply_callbacks():
                    await asyncio.sleep(0.05)

        firing = asyncio.create_task(fire_timers())
        try:
            for n in range(1000):
                carrier = carriers[n % len(carriers)]
                order_id = await dispatch.order_ready(store_id=f"s-{carrier}")
                orders[order_id] = carrier

            async def all_ended() -> bool:
                live = await dispatch.sql("SELECT count(*) FROM delivery WHERE ended_at IS NULL")
                pending = await dispatch.sql(
                    "SELECT (SELECT count(*) FROM carrier_callback WHERE outcome = 'pending')"
                    " + (SELECT count(*) FROM timer WHERE fired_at IS NULL AND kind = 'callback.apply')"
                )
                return live[0][0] == 0 and pending[0][0] == 0

            await eventually(all_ended, within=600, interval=0.5)  # a bound for a loaded 2-core machine, not a timing
        finally:
            stop.set()
            await firing
        rows = await dispatch.sql(
            "SELECT d.order_id, d.status, o.carrier, o.shop_order_id FROM delivery d "
            "JOIN offer o ON o.delivery_id = d.id"
        )
        scenarios = {}
        for order_id, status, carrier, shop_order_id in rows:
            view = (await dispatch.sim.get(f"/_sim/orders/{carrier}/{shop_order_id}")).json()
            scenario = view.get("scenario", "create_fail")
            scenarios[order_id] = scenario
            want = expected_end(WIRES[carrier], scenario)
            assert status == want.value, (order_id, carrier, scenario, status)
        assert len(scenarios) == 1000
        assert len(set(scenarios.values())) == len(CHAOS)
        counts = await dispatch.sql("SELECT key, type, count(*) FROM outbox GROUP BY key, type")
        once = {"delivery.created.v1", "delivery.picked_up.v1", "delivery.delivering.v1", "delivery.delivered.v1",
                "delivery.cancelled.v1", "delivery.returned.v1", "delivery.exception.v1"}  # fmt: skip
        for key, event_type, n in counts:
            if event_type in once:
                assert n == 1, (key, event_type, n, scenarios[key])
            if event_type == "delivery.rider_assigned.v1":
                # A carrier whose callbacks only prompt a query may already answer the second rider at the store.
                reassigned = {2, 1} if WIRES[orders[key]].confirm_by_query else {2}
                assert n in (reassigned if scenarios[key] == "reassign" else {1}), (key, n, scenarios[key])
