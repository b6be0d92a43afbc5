"""A rider's tasks are found through the index of offers by rider and state, in the generic plan a prepared statement
settles on after five runs as in a custom one. Nothing had indexed `rider_offer.rider_id` alone: with many deliveries
under way, a look at a rider's tasks read the whole table, or looked up the rider's offer for each delivery under way
of the merchant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.sql import Executable

from services.dispatch import views
from shared.auth import Principal, Role
from tests.support import planned

RIDER = Principal(sub="rider-1", role=Role.rider, merchant_id="m-1", store_ids=["s-1"])


class _Noted:
    """A session that notes the statement it is asked to run and finds nothing."""

    statement: Executable

    async def execute(self, statement: Executable) -> _Noted:
        self.statement = statement
        return self

    def all(self) -> list[Any]:
        return []


async def _rider_tasks_statement() -> Executable:
    session = _Noted()
    await views.rider_tasks(session, RIDER, datetime(2025, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
    return session.statement


@pytest.mark.parametrize("plan_cache_mode", ["force_generic_plan", "force_custom_plan"])
async def test_a_riders_tasks_are_found_by_the_index_of_offers_by_rider_and_state(
    dispatch_db_url: str, plan_cache_mode: str
) -> None:
    plan = await planned(dispatch_db_url, await _rider_tasks_statement(), {}, plan_cache_mode)
    assert "ix_rider_offer_rider_status" in plan
