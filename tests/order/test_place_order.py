"""Placing an order: validated against the store and catalogue, priced by the server, stock reserved atomically,
retries with an Idempotency-Key answered with the first order."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.order.conftest import CUSTOMER, MERCHANT, STORE_LAT, STORE_LNG, OrderHarness, bearer


async def test_fifty_concurrent_orders_for_ten_in_stock_sell_exactly_ten(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = (await h.product(stock=10, price_fen=2500))["skus"][0]["id"]
    body = {
        "store_id": "s-1",
        "items": [{"sku_id": sku, "quantity": 1}],
        "address": {"text": "x", "lat": STORE_LAT, "lng": STORE_LNG},
        "contact": {"name": "C", "phone": "13800000000"},
    }
    customers = [bearer("customer", f"openid-{i}") for i in range(50)]
    responses = await asyncio.gather(*(h.client.post("/v1/orders", json=body, headers=c) for c in customers))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 10
    assert codes.count(409) == 40
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {"/problems/out-of-stock"}
    assert await h.sql("SELECT stock FROM sku") == [(0,)]
    assert await h.sql("SELECT count(*) FROM customer_order") == [(10,)]
    product = (await h.client.get("/v1/stores/s-1/products", headers=CUSTOMER)).json()["items"][0]
    assert product["sold_out"] is True
    assert product["skus"][0]["sold_out"] is True


async def test_the_server_prices_the_order_and_keeps_a_snapshot(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    product = await h.product(price_fen=1500)
    sku = product["skus"][0]["id"]
    # 2.5 km away: base 5.00 + 1.00 (> 1 km) + 2.00 (> 2 km).
    far = await h.place(sku, quantity=2, lat=STORE_LAT + 0.0225)
    assert (far["items_fen"], far["delivery_fee_fen"], far["total_fen"]) == (3000, 800, 3800)
    assert far["items"][0]["price_fen"] == 1500
    assert far["items"][0]["sku_version"] == 1
    free = await h.place(sku, quantity=7)  # 105.00 ≥ 100.00: delivery is free
    assert (free["delivery_fee_fen"], free["total_fen"]) == (0, 10500)
    pickup = await h.place(sku, quantity=1, mode="pickup")  # no minimum and no fee at the counter
    assert (pickup["total_fen"], pickup["address"]) == (1500, None)
    # The catalogue changes; the order keeps what the customer agreed to.
    await h.client.patch(f"/v1/products/{product['id']}/skus/{sku}", json={"price_fen": 9900}, headers=MERCHANT)
    again = await h.order(far["id"])
    assert again["items"][0]["price_fen"] == 1500
    assert again["total_fen"] == 3800


async def test_refusals_are_precise_and_reserve_nothing(harness: OrderHarness) -> None:
    h = harness
    await h.store(fulfilment_modes=["delivery", "pickup"])
    product = await h.product(price_fen=1500, stock=5)
    sku = product["skus"][0]["id"]

    async def reason(**place: object) -> str:
        response = await h.client.post("/v1/orders", json=_body(sku, **place), headers=CUSTOMER)
        assert response.status_code in (409, 422), response.text
        body = response.json()
        return str(body.get("reason") or body["type"])

    assert await reason(lat=STORE_LAT + 0.05) == "out-of-range"
    assert await reason(quantity=1) == "below-minimum"
    assert await reason(fulfilment_mode="express") == "mode-not-offered"
    assert await reason(quantity=6) == "/problems/out-of-stock"
    assert await reason(sku_id="00000000-0000-0000-0000-000000000000") == "unknown-sku"
    assert await reason(fulfilment_mode="delivery", address=None) == "/problems/validation-failed"
    await h.client.patch(f"/v1/products/{product['id']}", json={"on_shelf": False}, headers=MERCHANT)
    assert await reason() == "off-shelf"
    await h.client.patch(f"/v1/products/{product['id']}", json={"on_shelf": True}, headers=MERCHANT)
    h.clock.advance(timedelta(hours=11))  # 23:00 in Shanghai
    assert await reason() == "store-closed"
    assert await h.sql("SELECT stock FROM sku") == [(5,)]
    assert await h.sql("SELECT count(*) FROM customer_order") == [(0,)]


def _body(sku: str, **overrides: object) -> dict[str, object]:
    lat = overrides.pop("lat", STORE_LAT + 0.01)
    body: dict[str, object] = {
        "store_id": "s-1",
        "items": [{"sku_id": overrides.pop("sku_id", sku), "quantity": overrides.pop("quantity", 2)}],
        "address": {"text": "x", "lat": lat, "lng": STORE_LNG},
        "contact": {"name": "C", "phone": "13800000000"},
    }
    body.update(overrides)
    return body


async def test_an_idempotency_key_returns_the_first_order(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = (await h.product(stock=10))["skus"][0]["id"]
    headers = {**CUSTOMER, "Idempotency-Key": "retry-key-0001"}
    responses = await asyncio.gather(*(h.client.post("/v1/orders", json=_body(sku), headers=headers) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200)
    assert await h.sql("SELECT stock FROM sku") == [(8,)]
    different = await h.client.post("/v1/orders", json=_body(sku, quantity=3), headers=headers)
    assert different.status_code == 422
    assert different.json()["type"] == "/problems/idempotency-key-reused"
    # Keys are per customer: another customer's identical key is another order.
    other = await h.client.post(
        "/v1/orders", json=_body(sku), headers={**bearer("customer", "openid-bob"), "Idempotency-Key": "retry-key-0001"}
    )
    assert other.status_code == 201
