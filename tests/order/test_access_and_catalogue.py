"""Who sees and does what (another's order is 404, riders get nothing here), stores and catalogue management,
the nearby search, and reviews feeding the store's rating."""

from __future__ import annotations

import pytest

from tests.order.conftest import (
    CUSTOMER,
    MERCHANT,
    OPS,
    OTHER_CUSTOMER,
    OTHER_MERCHANT,
    OWNER,
    RIDER,
    STORE_LAT,
    STORE_LNG,
    OrderHarness,
)
from tests.support import bearer

CALLERS = {
    "owner customer": CUSTOMER,
    "other customer": OTHER_CUSTOMER,
    "store's merchant": MERCHANT,
    "other merchant": OTHER_MERCHANT,
    "rider": RIDER,
    "ops": OPS,
}
# What each caller gets for: read the order, its history, accept it, start paying it.
MATRIX = {
    "owner customer": (200, 200, 403, 409),  # it is paid already
    "other customer": (404, 404, 404, 404),
    "store's merchant": (200, 200, 200, 403),
    "other merchant": (404, 404, 404, 404),
    "rider": (403, 403, 403, 403),
    "ops": (200, 200, 409, 403),  # ops may accept, but the store's merchant accepted first
}


async def test_the_rbac_matrix_across_roles_and_two_merchants(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    await h.store("s-2", headers=OTHER_MERCHANT)
    sku = (await h.product())["skus"][0]["id"]
    oid = (await h.paid_order(sku))["id"]
    got = {}
    for name, headers in CALLERS.items():
        got[name] = (
            (await h.client.get(f"/v1/orders/{oid}", headers=headers)).status_code,
            (await h.client.get(f"/v1/orders/{oid}/history", headers=headers)).status_code,
            (await h.act(oid, "accept", headers=headers)).status_code,
            (await h.client.post(f"/v1/orders/{oid}/payment", headers=headers)).status_code,
        )
    assert got == MATRIX
    lists = {name: (await h.client.get("/v1/orders", headers=headers)) for name, headers in CALLERS.items()}
    assert {n: r.json()["total"] for n, r in lists.items() if r.status_code == 200} == {
        "owner customer": 1, "other customer": 0, "store's merchant": 1, "other merchant": 0, "ops": 1
    }  # fmt: skip
    assert lists["rider"].status_code == 403
    # Staff of another store of the same merchant see nothing of this order.
    other_store_staff = bearer("merchant", "staff-3", "m-1", store_ids=["s-9"])
    assert (await h.client.get(f"/v1/orders/{oid}", headers=other_store_staff)).status_code == 404
    assert (await h.client.get("/v1/orders", headers=other_store_staff)).json()["total"] == 0
    merchant_wide = bearer("merchant", "owner", "m-1")
    assert (await h.client.get("/v1/orders", headers=merchant_wide)).json()["total"] == 1


async def test_merchants_manage_only_their_own_stores_and_products(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    product = await h.product()
    patch = await h.client.patch("/v1/stores/s-1", json={"min_order_fen": 100}, headers=OTHER_MERCHANT)
    assert patch.status_code == 404
    assert (await h.client.patch("/v1/stores/s-1", json={"min_order_fen": 100}, headers=MERCHANT)).status_code == 200
    sku_url = f"/v1/products/{product['id']}/skus/{product['skus'][0]['id']}"
    assert (await h.client.patch(sku_url, json={"stock": 0}, headers=OTHER_MERCHANT)).status_code == 404
    new_product = {"name": "x", "skus": [{"name": "y", "price_fen": 1, "stock": 1}]}
    assert (await h.client.post("/v1/stores/s-1/products", json=new_product, headers=CUSTOMER)).status_code == 403
    forged = await h.client.post("/v1/stores", json={**_store("s-9"), "merchant_id": "m-2"}, headers=MERCHANT)
    assert forged.status_code == 403
    duplicate = await h.client.post("/v1/stores", json=_store("s-1"), headers=MERCHANT)
    assert (duplicate.status_code, duplicate.json()["type"]) == (409, "/problems/store-exists")
    assert (await h.client.post("/v1/stores", json=_store("s-8"), headers=OPS)).status_code == 422  # whose store?
    updated = await h.client.patch(sku_url, json={"name": "特大碗", "stock": 0}, headers=MERCHANT)
    assert updated.json()["skus"][0] | {"id": None} == {
        "id": None, "name": "特大碗", "price_fen": 1500, "stock": 0, "on_shelf": True, "sold_out": True, "version": 2
    }  # fmt: skip
    assert (await h.client.delete(f"/v1/products/{product['id']}", headers=MERCHANT)).status_code == 204
    assert (await h.client.get("/v1/stores/s-1/products", headers=CUSTOMER)).json()["total"] == 0
    assert (await h.client.get(f"/v1/products/{product['id']}", headers=CUSTOMER)).status_code == 404


def _store(store_id: str, **fields: object) -> dict[str, object]:
    return {"id": store_id, "name": store_id, "phone": "010-1234567", "address": "a", "lat": STORE_LAT,
            "lng": STORE_LNG, **fields}  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"lat": 91},
        {"timezone": "Mars/Olympus"},
        {"opening_hours": [{"open": "25:00", "close": "22:00"}]},
        {"range_polygon": [[39.9, 116.3]]},
        {"fulfilment_modes": []},
        {"range_radius_m": None},
        {"unknown_field": 1},
    ],
)
async def test_bad_store_settings_are_a_422_problem(harness: OrderHarness, bad: dict[str, object]) -> None:
    response = await harness.client.post("/v1/stores", json=_store("s-3") | bad, headers=MERCHANT)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_nearby_stores_cover_the_point_open_first_then_near_then_rated(harness: OrderHarness) -> None:
    h = harness
    await h.store("near", range_radius_m=3000)
    await h.store("closed", opening_hours=[{"open": "18:00", "close": "02:00"}])
    await h.store("far-reach", lat=STORE_LAT + 0.04, range_radius_m=6000)  # 4.4 km away, delivers 6 km
    await h.store("too-far", lat=STORE_LAT + 0.04, range_radius_m=3000)  # 4.4 km away, delivers 3 km
    await h.store(
        "polygon",
        lat=STORE_LAT,
        lng=STORE_LNG + 0.02,
        range_radius_m=None,
        range_polygon=[[STORE_LAT - 0.01, STORE_LNG - 0.01], [STORE_LAT + 0.01, STORE_LNG - 0.01],
                       [STORE_LAT + 0.01, STORE_LNG + 0.03], [STORE_LAT - 0.01, STORE_LNG + 0.03]],
    )  # fmt: skip
    await h.store("inactive")
    await h.client.patch("/v1/stores/inactive", json={"active": False}, headers=OWNER)
    page = (await h.client.get(f"/v1/stores?lat={STORE_LAT}&lng={STORE_LNG}", headers=CUSTOMER)).json()
    assert [(s["id"], s["open_now"]) for s in page["items"]] == [
        ("near", True), ("polygon", True), ("far-reach", True), ("closed", False)
    ]  # fmt: skip
    assert page["items"][0]["distance_m"] == 0
    assert page["items"][1]["distance_m"] == 1706
    second = (
        await h.client.get(f"/v1/stores?lat={STORE_LAT}&lng={STORE_LNG}&offset=1&limit=2", headers=CUSTOMER)
    ).json()
    assert ([s["id"] for s in second["items"]], second["total"]) == (["polygon", "far-reach"], 4)
    bad = await h.client.get("/v1/stores?lat=100&lng=0", headers=CUSTOMER)
    assert bad.status_code == 422


async def test_reviews_feed_the_rating_and_the_merchant_replies_once(harness: OrderHarness) -> None:
    h = harness
    await h.store()
    sku = (await h.product())["skus"][0]["id"]
    oid = (await h.paid_order(sku))["id"]
    early = await h.client.post(f"/v1/orders/{oid}/review", json={"store_rating": 5}, headers=CUSTOMER)
    assert early.status_code == 409
    await h.act(oid, "accept")
    await h.deliver("delivery.delivered.v1", oid, carrier="dada", rider={"id": "r-7", "name": "李"})
    await h.act(oid, "confirm-receipt", headers=CUSTOMER)
    review = {"store_rating": 4, "rider_rating": 5, "text": "很快"}
    assert (await h.client.post(f"/v1/orders/{oid}/review", json=review, headers=OTHER_CUSTOMER)).status_code == 404
    assert (await h.client.post(f"/v1/orders/{oid}/review", json=review, headers=CUSTOMER)).status_code == 201
    again = await h.client.post(f"/v1/orders/{oid}/review", json=review, headers=CUSTOMER)
    assert (again.status_code, again.json()["type"]) == (409, "/problems/already-reviewed")
    assert (await h.client.get("/v1/stores/s-1", headers=CUSTOMER)).json()["rating"] == 4.0
    assert (
        await h.client.post(f"/v1/reviews/{oid}/reply", json={"reply": "谢谢"}, headers=OTHER_MERCHANT)
    ).status_code == 404
    assert (
        await h.client.post(f"/v1/reviews/{oid}/reply", json={"reply": "谢谢"}, headers=MERCHANT)
    ).status_code == 200
    assert (
        await h.client.post(f"/v1/reviews/{oid}/reply", json={"reply": "再谢"}, headers=MERCHANT)
    ).status_code == 409
    listed = (await h.client.get("/v1/stores/s-1/reviews", headers=CUSTOMER)).json()
    assert [(r["store_rating"], r["reply"]) for r in listed["items"]] == [(4, "谢谢")]
    assert (await h.events(oid))[-1] == "order.reviewed.v1"
