"""Bad input is a 4xx problem+json, never a 500: each class of input the fuzz found crashing the order service."""

from __future__ import annotations

from typing import Any

import pytest

from tests.order.conftest import MERCHANT, STORE_LAT, STORE_LNG, OrderHarness

SQUARE = [[STORE_LAT - 0.01, STORE_LNG - 0.01], [STORE_LAT + 0.01, STORE_LNG - 0.01],
          [STORE_LAT + 0.01, STORE_LNG + 0.01], [STORE_LAT - 0.01, STORE_LNG + 0.01]]  # fmt: skip


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return dict(response.json())


@pytest.mark.parametrize(
    "patch",
    [
        {"name": None},
        {"phone": None},
        {"active": None},
        {"opening_hours": None},
        {"timezone": "Mars/Olympus"},
        {"timezone": "../../etc/passwd"},
        {"range_polygon": [[39.9, 116.3], [39.91, 116.3], [39.9]]},
        {"range_polygon": [[39.9, 116.3], [39.91, 116.3], [39.92, 116.3]]},  # a line covers nothing
        {"range_polygon": [[39.9, 116.3], [39.91, 116.3], [91, 116.3]]},
        {"range_polygon": [[39.9, 116.3], [39.9, 116.3], [39.9, 116.3], [39.9, 116.3]]},
        {"min_order_fen": 2**31},
        {"delivery_tiers": [{"above_m": 1000, "add_fen": 2**40}]},
    ],
)
async def test_store_patch_refuses_null_unknown_zones_bad_polygons_and_huge_numbers(
    harness: OrderHarness, patch: dict[str, Any]
) -> None:
    await harness.store("s-1")
    response = await harness.client.patch("/v1/stores/s-1", json=patch, headers=MERCHANT)
    _problem(response, 422)
    assert (await harness.client.get("/v1/stores/s-1", headers=MERCHANT)).json()["timezone"] == "Asia/Shanghai"


async def test_store_patch_clears_what_may_be_empty_and_takes_closed_rings(harness: OrderHarness) -> None:
    await harness.store("s-1")
    closed_ring = [*SQUARE, SQUARE[0]]
    response = await harness.client.patch(
        "/v1/stores/s-1",
        json={"range_radius_m": None, "range_polygon": closed_ring, "free_delivery_above_fen": None},
        headers=MERCHANT,
    )
    assert response.status_code == 200, response.text
    store = response.json()
    assert (store["range_radius_m"], store["free_delivery_above_fen"]) == (None, None)
    assert store["range_polygon"] == SQUARE  # stored open
    patched = await harness.client.patch("/v1/stores/s-1", json={"timezone": "Asia/Urumqi"}, headers=MERCHANT)
    assert patched.json()["timezone"] == "Asia/Urumqi"


async def test_product_and_sku_patch_refuse_null(harness: OrderHarness) -> None:
    await harness.store("s-1")
    product = await harness.product("s-1")
    sku = product["skus"][0]
    for path, body in [
        (f"/v1/products/{product['id']}", {"on_shelf": None}),
        (f"/v1/products/{product['id']}", {"name": None}),
        (f"/v1/products/{product['id']}/skus/{sku['id']}", {"price_fen": None}),
        (f"/v1/products/{product['id']}/skus/{sku['id']}", {"stock": None}),
    ]:
        problem = _problem(await harness.client.patch(path, json=body, headers=MERCHANT), 422)
        assert problem["errors"][0]["loc"][-1] == next(iter(body))


async def test_numbers_beyond_their_column_are_a_422(harness: OrderHarness) -> None:
    await harness.store("s-1")
    product = await harness.product("s-1")
    too_much = await harness.client.post(
        f"/v1/products/{product['id']}/skus", json={"name": "x", "price_fen": 1, "stock": 2**31}, headers=MERCHANT
    )
    _problem(too_much, 422)
    far = await harness.client.get("/v1/orders", params={"offset": 2**63}, headers=MERCHANT)
    _problem(far, 422)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/stores/s%00-1", None),
        ("/v1/stores/s%FF-1", None),
        ("/v1/stores/s%0A-1", None),
        ("/v1/orders", {"status": "paid\x00"}),
        ("/v1/orders", {"store_id": "s-\x1b1"}),
    ],
)
async def test_control_characters_and_non_utf8_in_paths_and_queries_are_a_400(
    harness: OrderHarness, path: str, params: dict[str, str] | None
) -> None:
    problem = _problem(await harness.client.get(path, params=params, headers=MERCHANT), 400)
    assert problem["type"] == "/problems/invalid-characters"


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "Noodles\\u0000", "skus": [{"name": "big", "price_fen": 1, "stock": 1}]}',
        b'{"name": "Noodles\\ud800", "skus": [{"name": "big", "price_fen": 1, "stock": 1}]}',
        b'{"name": "Noodles", "skus": [{"name": "big", "price_fen": 1, "stock": 1, "\\u0007": 1}]}',
        b'{"name": "Noodles", "skus": [{"name": "big", "price_fen": NaN, "stock": 1}]}',
        b'{"name": "Noodles", "skus": [{"name": "big", "price_fen": 1e999, "stock": 1}]}',
    ],
)
async def test_json_strings_that_no_field_can_hold_are_a_400(harness: OrderHarness, body: bytes) -> None:
    await harness.store("s-1")
    response = await harness.client.post(
        "/v1/stores/s-1/products", content=body, headers=MERCHANT | {"Content-Type": "application/json"}
    )
    _problem(response, 400)


async def test_json_text_may_hold_tabs_newlines_and_any_script(harness: OrderHarness) -> None:
    await harness.store("s-1")
    body = {
        "name": "牛肉面 🍜",
        "description": "line one\nline\ttwo\r\n",
        "skus": [{"name": "大碗", "price_fen": 1, "stock": 1}],
    }
    response = await harness.client.post("/v1/stores/s-1/products", json=body, headers=MERCHANT)
    assert response.status_code == 201, response.text
    assert response.json()["description"] == body["description"]


async def test_a_total_beyond_what_an_order_holds_is_refused_before_stock_is_taken(harness: OrderHarness) -> None:
    await harness.store("s-1")
    product = await harness.product("s-1", price_fen=2**31 - 1, stock=10)
    sku_id = product["skus"][0]["id"]
    refused = await harness.place(sku_id, quantity=2, expect=409)
    assert refused["reason"] == "total-too-large"
    assert (await harness.client.get(f"/v1/products/{product['id']}", headers=MERCHANT)).json()["skus"][0][
        "stock"
    ] == 10


async def test_a_json_body_beyond_the_limit_is_a_413_however_it_is_sent(harness: OrderHarness) -> None:
    """Services refuse it before holding it whole, with or without a Content-Length (a chunked upload)."""
    huge = b'{"name": "' + b"x" * (1024 * 1024 + 1) + b'"}'

    async def chunks() -> Any:
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    for content in (huge, chunks()):
        answer = await harness.client.patch(
            "/v1/stores/s-1", content=content, headers={**MERCHANT, "Content-Type": "application/json"}
        )
        _problem(answer, 413)
