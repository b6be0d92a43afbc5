"""Live streams: every status once and in order across a reconnect with `Last-Event-ID`, fed from the database
(so any replica serves them), authorised when they open."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.notify.conftest import (
    CUSTOMER,
    MERCHANT,
    OTHER_CUSTOMER,
    OTHER_MERCHANT,
    OTHER_STORE_STAFF,
    STORE_STAFF,
    NotifyHarness,
)
from tests.support import bearer

Event = tuple[str, str, dict[str, Any]]


async def read(client: httpx.AsyncClient, path: str, headers: dict[str, str], count: int,
               last_event_id: str | None = None) -> list[Event]:  # fmt: skip
    """The first `count` events of the stream (id, event, data), then disconnects."""
    extra = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    async with client.stream("GET", path, headers=headers | extra, timeout=10) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    events.append((fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])))
                    if len(events) == count:
                        return events
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return events


async def test_a_reconnecting_client_sees_every_status_once_and_in_order(notify: NotifyHarness) -> None:
    path = "/v1/notifications/streams/orders/o-3001"
    await notify.order("o-3001")
    await notify.order("o-3001", event="order.accepted.v1", status="accepted")
    first = await read(notify.client, path, CUSTOMER, 2)
    assert [e[2]["event"] for e in first] == ["order.paid", "order.accepted"]
    # Disconnected; the delivery goes on meanwhile.
    await notify.delivery("o-3001", "rider_assigned", "rider_assigned", eta="2026-12-07T05:30:00+00:00")
    await notify.delivery("o-3001", "picked_up", "picked_up")

    async def later() -> None:
        await asyncio.sleep(0.3)  # while the reconnected client waits on the live tail
        await notify.delivery("o-3001", "delivered", "delivered")
        await notify.order("o-3001", event="order.completed.v1", status="completed")

    feeding = asyncio.create_task(later())
    rest = await read(notify.client, path, CUSTOMER, 5, last_event_id=first[-1][0])
    await feeding
    names = [e[2].get("event", e[1]) for e in rest]
    assert names == ["delivery.rider_assigned", "delivery.picked_up", "delivery.delivered", "order.completed", "end"]
    assert rest[0][2]["rider_name"] == "张三"
    assert rest[0][2]["eta"].startswith("2026-12-07")
    assert rest[-1][1] == "end"  # the order is final: the stream says so and closes
    ids = [int(e[0]) for e in first + rest[:-1]]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 6


async def test_a_store_stream_follows_all_its_orders(notify: NotifyHarness) -> None:
    await notify.order("o-3002")
    await notify.order("o-3003")
    await notify.order("o-3002", event="order.accepted.v1", status="accepted")
    events = await read(notify.client, "/v1/notifications/streams/stores/s-1", STORE_STAFF, 3)
    assert [(e[2]["order_id"], e[2]["event"]) for e in events] == [
        ("o-3002", "order.paid"), ("o-3003", "order.paid"), ("o-3002", "order.accepted")]  # fmt: skip
    resumed = await read(notify.client, "/v1/notifications/streams/stores/s-1?after=2", MERCHANT, 1)
    assert resumed[0][0] == "3"


async def test_streams_are_authorised_when_they_open(notify: NotifyHarness) -> None:
    await notify.order("o-3004")
    order_path = "/v1/notifications/streams/orders/o-3004"
    for headers in (OTHER_CUSTOMER, OTHER_MERCHANT, OTHER_STORE_STAFF):
        response = await notify.client.get(order_path, headers=headers)
        assert response.status_code == 404, response.text
    for headers in (CUSTOMER, OTHER_MERCHANT, OTHER_STORE_STAFF):
        response = await notify.client.get("/v1/notifications/streams/stores/s-1", headers=headers)
        assert response.status_code == 404, response.text
    assert (await notify.client.get(order_path)).status_code == 401
    bad = await notify.client.get(order_path, headers=CUSTOMER | {"Last-Event-ID": "abc"})
    assert bad.status_code == 422


async def test_the_riders_position_reaches_the_stream(notify: NotifyHarness) -> None:
    await notify.order("o-3005")
    await notify.delivery("o-3005", "location", "delivering", lat=39.91, lng=116.40,
                          located_at="2026-12-07T05:00:00+00:00", eta="2026-12-07T05:10:00+00:00")  # fmt: skip
    events = await read(notify.client, "/v1/notifications/streams/orders/o-3005", CUSTOMER, 2)
    assert events[1][1] == "position"
    assert events[1][2] | {"at": None} == {"order_id": "o-3005", "delivery_id": "d-o-3005", "lat": 39.91,
                                          "lng": 116.40, "located_at": "2026-12-07T05:00:00+00:00",
                                          "eta": "2026-12-07T05:10:00+00:00", "at": None}  # fmt: skip
    assert await notify.notices("o-3005") != []  # only `paid`: a position is no notice
    assert [n["kind"] for n in await notify.notices("o-3005")] == ["paid"]


async def test_a_tracking_links_principal_watches_only_its_order(notify: NotifyHarness) -> None:
    await notify.order("o-3010")
    await notify.order("o-3011")  # the same customer's
    tracking = bearer("customer", "openid-alice", "m-1", order_id="o-3010")
    [(_, _, paid)] = await read(notify.client, "/v1/notifications/streams/orders/o-3010", tracking, 1)
    assert paid == {"order_id": "o-3010", "event": "order.paid", "status": "paid", "at": paid["at"]}
    async with notify.client.stream("GET", "/v1/notifications/streams/orders/o-3011", headers=tracking) as other:
        assert other.status_code == 404  # read as a stream: a stream wrongly opened fails here instead of hanging
    assert len(await read(notify.client, "/v1/notifications/streams/orders/o-3011", CUSTOMER, 1)) == 1
