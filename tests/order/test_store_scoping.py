"""Store scoping, one rule for every kind of object: staff of store s-1 (a token listing `store_ids`) reach nothing of
s-2, another store of their merchant, and another merchant reaches nothing of either; out of scope reads as absent
(404). Merchant-wide staff reach every store of their merchant; riders manage no catalogue; a staff token that names
no merchant is refused."""

from __future__ import annotations

from typing import Any

from tests.order.conftest import CUSTOMER, MERCHANT, OTHER_MERCHANT, OWNER, RIDER, OrderHarness
from tests.support import bearer

NO_MERCHANT = bearer("merchant", "staff-9")
OUTSIDERS = {"staff of s-1": MERCHANT, "other merchant": OTHER_MERCHANT}
NEW_PRODUCT = {"name": "卤蛋", "skus": [{"name": "一个", "price_fen": 300, "stock": 10}]}


async def _two_stores(h: OrderHarness) -> dict[str, Any]:
    await h.store("s-1")
    await h.store("s-2")
    await h.product("s-1")
    return await h.product("s-2", headers=OWNER)


async def test_store_settings_products_skus_and_stock_of_another_store_are_not_found(harness: OrderHarness) -> None:
    h = harness
    product = await _two_stores(h)
    sku = product["skus"][0]
    product_url, sku_url = f"/v1/products/{product['id']}", f"/v1/products/{product['id']}/skus/{sku['id']}"
    for name, headers in OUTSIDERS.items():
        got = {
            "store edit": await h.client.patch("/v1/stores/s-2", json={"min_order_fen": 1}, headers=headers),
            "off-shelf list": await h.client.get("/v1/stores/s-2/products?include_off_shelf=true", headers=headers),
            "product add": await h.client.post("/v1/stores/s-2/products", json=NEW_PRODUCT, headers=headers),
            "product edit": await h.client.patch(product_url, json={"on_shelf": False}, headers=headers),
            "sku add": await h.client.post(f"{product_url}/skus", json=NEW_PRODUCT["skus"][0], headers=headers),
            "reprice": await h.client.patch(sku_url, json={"price_fen": 1}, headers=headers),
            "stock": await h.client.patch(sku_url, json={"stock": 0}, headers=headers),
            "delist": await h.client.delete(product_url, headers=headers),
        }
        assert {action: r.status_code for action, r in got.items()} == dict.fromkeys(got, 404), name
    store = (await h.client.get("/v1/stores/s-2", headers=CUSTOMER)).json()
    assert store["min_order_fen"] == 2000
    after = (await h.client.get(product_url, headers=CUSTOMER)).json()
    assert (after["on_shelf"], len(after["skus"])) == (True, 1)
    assert (after["skus"][0]["price_fen"], after["skus"][0]["stock"]) == (1500, 100)
    # Their own store, and the merchant-wide account on any store, still work.
    assert (await h.client.patch("/v1/stores/s-1", json={"min_order_fen": 1}, headers=MERCHANT)).status_code == 200
    assert (await h.client.patch(sku_url, json={"price_fen": 1800}, headers=OWNER)).status_code == 200


async def test_riders_and_customers_do_not_manage_a_catalogue(harness: OrderHarness) -> None:
    h = harness
    product = await _two_stores(h)
    sku_url = f"/v1/products/{product['id']}/skus/{product['skus'][0]['id']}"
    for headers in (RIDER, CUSTOMER):
        assert (await h.client.patch("/v1/stores/s-2", json={"min_order_fen": 1}, headers=headers)).status_code == 403
        assert (await h.client.patch(sku_url, json={"price_fen": 1}, headers=headers)).status_code == 403
        assert (await h.client.post("/v1/stores/s-2/products", json=NEW_PRODUCT, headers=headers)).status_code == 403
        assert (await h.client.post("/v1/stores", json=_store("s-7"), headers=headers)).status_code == 403
        # A rider is staff of m-1, yet the catalogue's hidden side stays hidden from it.
        hidden = await h.client.get("/v1/stores/s-2/products?include_off_shelf=true", headers=headers)
        assert hidden.status_code == 404


async def test_who_may_open_a_store(harness: OrderHarness) -> None:
    h = harness
    opened = {
        "staff of s-1, another store": await h.client.post("/v1/stores", json=_store("s-3"), headers=MERCHANT),
        "staff of s-1, no id": await h.client.post("/v1/stores", json=_store(None), headers=MERCHANT),
        "no merchant named": await h.client.post("/v1/stores", json=_store("s-4"), headers=NO_MERCHANT),
        "for another merchant": await h.client.post(
            "/v1/stores", json=_store("s-5") | {"merchant_id": "m-2"}, headers=OWNER
        ),
        "staff of s-1, its own store": await h.client.post("/v1/stores", json=_store("s-1"), headers=MERCHANT),
        "merchant-wide": await h.client.post("/v1/stores", json=_store("s-6"), headers=OWNER),
    }
    assert {name: r.status_code for name, r in opened.items()} == {
        "staff of s-1, another store": 403,
        "staff of s-1, no id": 403,
        "no merchant named": 403,
        "for another merchant": 403,
        "staff of s-1, its own store": 201,
        "merchant-wide": 201,
    }
    assert opened["merchant-wide"].json()["merchant_id"] == "m-1"


async def test_orders_of_another_store_are_not_listed_read_or_moved(harness: OrderHarness) -> None:
    h = harness
    product = await _two_stores(h)
    sku = product["skus"][0]["id"]
    orders = [(await h.paid_order(sku, store_id="s-2"))["id"] for _ in range(5)]
    for name, headers in OUTSIDERS.items():
        listed = (await h.client.get("/v1/orders", headers=headers)).json()
        assert listed["total"] == 0, name
        assert (await h.client.get("/v1/orders?store_id=s-2", headers=headers)).json()["total"] == 0, name
        got = {
            "detail": await h.client.get(f"/v1/orders/{orders[0]}", headers=headers),
            "history": await h.client.get(f"/v1/orders/{orders[0]}/history", headers=headers),
            "refunds": await h.client.get(f"/v1/orders/{orders[0]}/refunds", headers=headers),
            "accept": await h.act(orders[0], "accept", headers=headers),
            "reject": await h.act(orders[1], "reject", headers=headers, reason="not ours"),
            "ready": await h.act(orders[2], "ready", headers=headers),
            "cancel": await h.act(orders[3], "cancel", headers=headers, reason="not ours"),
        }
        assert {action: r.status_code for action, r in got.items()} == dict.fromkeys(got, 404), name
    assert [(await h.order(oid))["status"] for oid in orders] == ["paid"] * 5
    assert (await h.client.get("/v1/orders", headers=OWNER)).json()["total"] == 5
    assert (await h.act(orders[4], "accept", headers=OWNER)).status_code == 200
    # The review of an s-2 order is s-2's to answer.
    await h.deliver("delivery.delivered.v1", orders[4], carrier="dada", rider={"id": "r-7", "name": "李"})
    assert (await h.act(orders[4], "confirm-receipt", headers=CUSTOMER)).status_code == 200
    review = await h.client.post(f"/v1/orders/{orders[4]}/review", json={"store_rating": 5}, headers=CUSTOMER)
    assert review.status_code == 201
    for name, headers in OUTSIDERS.items():
        reply = await h.client.post(f"/v1/reviews/{orders[4]}/reply", json={"reply": "?"}, headers=headers)
        assert reply.status_code == 404, name
    assert (
        await h.client.post(f"/v1/reviews/{orders[4]}/reply", json={"reply": "谢谢"}, headers=OWNER)
    ).status_code == 200


async def test_a_staff_token_naming_no_merchant_is_refused(harness: OrderHarness) -> None:
    h = harness
    product = await _two_stores(h)
    oid = (await h.paid_order(product["skus"][0]["id"], store_id="s-2"))["id"]
    refused = {
        "orders": await h.client.get("/v1/orders", headers=NO_MERCHANT),
        "order": await h.client.get(f"/v1/orders/{oid}", headers=NO_MERCHANT),
        "accept": await h.act(oid, "accept", headers=NO_MERCHANT),
        "store edit": await h.client.patch("/v1/stores/s-2", json={"min_order_fen": 1}, headers=NO_MERCHANT),
        "product add": await h.client.post("/v1/stores/s-2/products", json=NEW_PRODUCT, headers=NO_MERCHANT),
    }
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 403)


def _store(store_id: str | None) -> dict[str, object]:
    body: dict[str, object] = {"name": "新店", "phone": "010-1234567", "address": "a", "lat": 39.9, "lng": 116.4}
    return body | ({"id": store_id} if store_id else {})


async def test_staff_list_the_stores_they_cover_and_customers_need_a_point(harness: OrderHarness) -> None:
    h = harness
    await _two_stores(h)
    callers = {"staff of s-1": MERCHANT, "merchant-wide": OWNER, "other merchant": OTHER_MERCHANT}
    listed = {name: await h.client.get("/v1/stores", headers=headers) for name, headers in callers.items()}
    ids = {name: [s["id"] for s in r.json()["items"]] for name, r in listed.items()}
    assert ids == {"staff of s-1": ["s-1"], "merchant-wide": ["s-1", "s-2"], "other merchant": []}
    assert listed["merchant-wide"].json()["items"][0]["distance_m"] is None
    for headers in (CUSTOMER, RIDER, NO_MERCHANT):
        assert (await h.client.get("/v1/stores", headers=headers)).status_code in (403, 422)
    half = await h.client.get("/v1/stores?lat=39.9", headers=OWNER)
    assert half.status_code == 422
    assert half.headers["content-type"].startswith("application/problem+json")
