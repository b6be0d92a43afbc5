"""The after-sales side of `make chaos`'s load: which completed orders get a case, that what the customer asks is an
application the after-sales API takes, and that the drain waits for the cases the load opened."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from deploy.chaos.drain import _unsettled
from deploy.chaos.invariants import Databases
from deploy.chaos.load import CASE_PLANS, _application, opens_case
from services.aftersales.schemas import ApplyCommand
from tests.deploy.test_chaos_invariants import dbs, insert  # noqa: F401 - dbs is the databases fixture

ORDER: dict[str, Any] = {
    "id": "o-chaos",
    "items": [{"sku_id": "5f1c2a8e-0000-4000-8000-0000000000c1", "price_fen": 1800, "quantity": 2}],
    "delivery_fee_fen": 500,
    "total_fen": 4100,
}


@pytest.mark.parametrize(("share", "opened"), [(0.0, 0), (0.3, 30), (0.25, 25), (1.0, 100)])
def test_a_share_of_the_completed_orders_opens_a_case(share: float, opened: int) -> None:
    chosen = [n for n in range(1, 101) if opens_case(n, share)]
    assert len(chosen) == opened
    # Spread evenly: never two chosen in a row below one half.
    assert share > 0.5 or all(b - a > 1 for a, b in pairwise(chosen))


@pytest.mark.parametrize("plan", CASE_PLANS)
def test_each_plan_applies_with_a_body_the_aftersales_api_takes(plan: str) -> None:
    command = ApplyCommand.model_validate({"order_id": ORDER["id"], **_application(ORDER, plan)})
    assert command.lines
    assert len(command.description.strip()) >= 2  # the reasons that need a text have one


def test_the_whole_order_back_names_every_line_and_the_delivery_fee() -> None:
    command = ApplyCommand.model_validate({"order_id": ORDER["id"], **_application(ORDER, "refund_all")})
    assert {(line.sku_id, line.quantity) for line in command.lines} == {
        (ORDER["items"][0]["sku_id"], 2),
        ("delivery_fee", 1),
    }
    assert command.amount_fen is None  # all refundable
    part = ApplyCommand.model_validate({"order_id": ORDER["id"], **_application(ORDER, "refund_part")})
    assert part.amount_fen == 900


async def test_the_drain_waits_for_cases_refunding_and_the_loads_cases_still_open(dbs: Databases) -> None:  # noqa: F811
    await insert(dbs["aftersales"], "aftersales_case", id="as-refunding", order_id="o-1", state="refunding")
    await insert(dbs["aftersales"], "aftersales_case", id="as-open", order_id="o-2", state="requested")
    await insert(dbs["aftersales"], "aftersales_case", id="as-done", order_id="o-3", state="refunded",
                 closed_at=datetime.now(UTC))  # fmt: skip
    left = await _unsettled(dbs, [], ["as-open", "as-done"])
    assert left["cases refunding"] == 1
    assert left["cases not closed"] == 1
    await dbs["aftersales"].execute(
        "UPDATE aftersales_case SET state = 'refunded', closed_at = now() WHERE id IN ('as-refunding', 'as-open')"
    )
    left = await _unsettled(dbs, [], ["as-open", "as-done"])
    assert left["cases refunding"] == left["cases not closed"] == 0
