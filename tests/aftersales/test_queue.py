"""The merchant's queue of cases: the open ones with the soonest deadline first (a case waiting on nobody's deadline
last), the closed ones apart, each line named as the order has it."""

from __future__ import annotations

from datetime import timedelta

from tests.aftersales.conftest import CUSTOMER, MERCHANT, AftersalesHarness


async def _listed(h: AftersalesHarness, **params: str) -> list[str]:
    response = await h.client.get("/v1/aftersales/cases", params=params, headers=MERCHANT)
    assert response.status_code == 200, response.text
    return [case["id"] for case in response.json()["items"]]


async def test_open_cases_are_listed_soonest_deadline_first_with_their_lines_named(
    aftersales: AftersalesHarness,
) -> None:
    h = aftersales
    for order_id in ("o-1", "o-2", "o-3", "o-4"):
        await h.order(order_id)
    later = (await h.apply("o-1")).json()  # answered within 3 h of now + 1 h below
    h.clock.advance(timedelta(minutes=1))
    refunding = (await h.apply("o-2")).json()
    await h.act(refunding["id"], "approve")  # open, but no deadline runs while the refund is on its way
    cancelled = (await h.apply("o-3")).json()
    await h.act(cancelled["id"], "cancel", headers=CUSTOMER)
    h.clock.advance(timedelta(hours=-1))  # an application made earlier answers earlier
    sooner = (await h.apply("o-4", lines=[{"sku_id": "sku-egg", "quantity": 1},
                                          {"sku_id": "delivery_fee", "quantity": 1}])).json()  # fmt: skip

    assert await _listed(h, open="true", sort="deadline") == [sooner["id"], later["id"], refunding["id"]]
    assert await _listed(h, open="false") == [cancelled["id"]]
    assert sorted(await _listed(h)) == sorted(c["id"] for c in (later, refunding, cancelled, sooner))
    bad = await h.client.get("/v1/aftersales/cases", params={"sort": "oldest"}, headers=MERCHANT)
    assert bad.status_code == 422

    [first] = (await h.client.get("/v1/aftersales/cases", params={"open": "true", "sort": "deadline", "limit": "1"},
                                  headers=MERCHANT)).json()["items"]  # fmt: skip
    assert first["lines"] == [
        {"sku_id": "delivery_fee", "quantity": 1, "name": None}, {"sku_id": "sku-egg", "quantity": 1, "name": "卤蛋"},
    ]  # fmt: skip
