"""The callback queue's statements find pending callbacks through their partial index in the generic plan a prepared
statement settles on after five runs. With the outcome a parameter, the generic plan could not use that index and
walked, on every claim, the outcome index's entries of every callback applied since the last vacuum."""

from __future__ import annotations

import uuid

import pytest

from services.dispatch.callback_queue import _CLAIM, _FIRST_PENDING
from services.dispatch.callbacks import _WAITING_FOR_QUERY
from tests.support import planned

STATEMENTS = {
    "claim": (_CLAIM, {"batch": 100}),
    "first pending": (_FIRST_PENDING, {"deliveries": [uuid.uuid4()], "ours": [uuid.uuid4()]}),
    "waiting for query": (_WAITING_FOR_QUERY, {"offer_id": uuid.uuid4()}),
}


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_generic_plan_finds_pending_callbacks_by_their_partial_index(dispatch_db_url: str, name: str) -> None:
    assert "ix_carrier_callback_pending" in await planned(dispatch_db_url, *STATEMENTS[name])
