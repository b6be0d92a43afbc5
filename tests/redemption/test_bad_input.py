"""Bad input to the redemption service is a 4xx problem+json, never a 500."""

from __future__ import annotations

import pytest

from tests.redemption.conftest import MERCHANT, RedemptionHarness


@pytest.mark.parametrize(
    "window",
    [
        {"valid_until": "2026-12-31T16:00:00"},
        {"valid_from": "2026-11-20T08:00:00", "valid_until": "2026-12-31T16:00:00+08:00"},
    ],
)
async def test_a_voucher_window_without_a_time_zone_is_a_422(
    redemption: RedemptionHarness, window: dict[str, str]
) -> None:
    body = {"store_id": "s-1", "customer_id": "openid-alice", "title": "洗车 5 次卡", "uses": 5, **window}
    response = await redemption.client.post("/v1/codes/vouchers", json=body, headers=MERCHANT)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["type"] == "timezone_aware"


async def test_an_offset_beyond_the_column_is_a_422(redemption: RedemptionHarness) -> None:
    response = await redemption.client.get("/v1/codes", params={"offset": 2**63}, headers=MERCHANT)
    assert response.status_code == 422, response.text
