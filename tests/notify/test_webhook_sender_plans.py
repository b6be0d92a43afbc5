"""The webhook sender's statements find due and abandoned deliveries through the partial index of their state in the
generic plan a prepared statement settles on after five runs. With the state a parameter, the generic plan could not
use that index (tests/dispatch/test_callback_queue_plans.py does the same for the callback queue)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.sql import Executable

from services.notify.webhook_sender import _CLAIM, _NEXT_DUE, _RECLAIM_ABANDONED
from tests.support import planned

NOW = datetime(2025, 1, 1, tzinfo=UTC)
# Each statement, the values of its parameters, and the partial index it looks for its deliveries in.
STATEMENTS: dict[str, tuple[Executable, dict[str, object], str]] = {
    "next due": (_NEXT_DUE, {}, "ix_webhook_delivery_due"),
    "claim": (_CLAIM, {"now": NOW, "batch": 100, "lease": NOW}, "ix_webhook_delivery_due"),
    "reclaim abandoned": (_RECLAIM_ABANDONED, {"now": NOW}, "ix_webhook_delivery_lease"),
}


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_generic_plan_finds_deliveries_by_the_partial_index_of_their_state(
    notify_db_url: str, name: str
) -> None:
    statement, values, index = STATEMENTS[name]
    assert index in await planned(notify_db_url, statement, values)
