"""The callback queue's statements find pending callbacks through their partial index in the generic plan a prepared
statement settles on after five runs. With the outcome a parameter, the generic plan could not use that index and
walked, on every claim, the outcome index's entries of every callback applied since the last vacuum."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Executable

from services.dispatch.callback_queue import _CLAIM, _FIRST_PENDING
from services.dispatch.callbacks import _WAITING_FOR_QUERY

STATEMENTS = {
    "claim": (_CLAIM, {"batch": 100}),
    "first pending": (_FIRST_PENDING, {"deliveries": [uuid.uuid4()], "ours": [uuid.uuid4()]}),
    "waiting for query": (_WAITING_FOR_QUERY, {"offer_id": uuid.uuid4()}),
}


def _prepared(statement: Executable, values: dict[str, object]) -> tuple[str, list[object]]:
    expanded = statement.compile(dialect=postgresql.asyncpg.dialect()).construct_expanded_state(values)
    return expanded.statement, list(expanded.positional_parameters)


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_generic_plan_finds_pending_callbacks_by_their_partial_index(dispatch_db_url: str, name: str) -> None:
    sql, args = _prepared(*STATEMENTS[name])
    connection = await asyncpg.connect(dispatch_db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
        await connection.execute(f"PREPARE looked_for AS {sql}")
        written = ", ".join(str(value) if isinstance(value, int) else f"'{value}'" for value in args)  # ints, uuids
        plan = await connection.fetch(f"EXPLAIN EXECUTE looked_for({written})")  # the generic plan, whatever values
    finally:
        await connection.close()
    assert "ix_carrier_callback_pending" in "\n".join(row[0] for row in plan)
