"""A value the schema lets through and the database refuses as data is still the caller's fault: a 422."""

from __future__ import annotations

from tests.dispatch.conftest import OPS, DispatchHarness


async def test_a_value_the_database_refuses_is_a_422_not_a_500(dispatch: DispatchHarness) -> None:
    # Beyond PostgreSQL's bigint: the driver refuses to send it (SQLSTATE class 22, data exception).
    response = await dispatch.client.get("/v1/carriers/callbacks", params={"offset": 2**64}, headers=OPS)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/value-not-storable"
