"""The webhook sender's statements find due and abandoned deliveries through the partial index of their state in the
generic plan a prepared statement settles on after five runs. With the state a parameter, the generic plan could not
use that index (tests/dispatch/test_callback_queue_plans.py does the same for the callback queue)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Executable

from services.notify.webhook_sender import _CLAIM, _NEXT_DUE, _RECLAIM_ABANDONED

NOW = datetime(2025, 1, 1, tzinfo=UTC)
# Each statement, the values of its parameters, and the partial index it looks for its deliveries in.
STATEMENTS: dict[str, tuple[Executable, dict[str, object], str]] = {
    "next due": (_NEXT_DUE, {}, "ix_webhook_delivery_due"),
    "claim": (_CLAIM, {"now": NOW, "batch": 100, "lease": NOW}, "ix_webhook_delivery_due"),
    "reclaim abandoned": (_RECLAIM_ABANDONED, {"now": NOW}, "ix_webhook_delivery_lease"),
}


def _prepared(statement: Executable, values: dict[str, object]) -> tuple[str, list[object]]:
    expanded = statement.compile(dialect=postgresql.asyncpg.dialect()).construct_expanded_state(values)
    return expanded.statement, list(expanded.positional_parameters)


def _written(value: object) -> str:
    """A parameter's value as EXECUTE takes it: NULL, a number, or a quoted literal (a state, a timestamp)."""
    if value is None:
        return "NULL"
    return str(value) if isinstance(value, int) else f"'{value}'"


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_generic_plan_finds_deliveries_by_the_partial_index_of_their_state(
    notify_db_url: str, name: str
) -> None:
    statement, values, index = STATEMENTS[name]
    sql, args = _prepared(statement, values)
    connection = await asyncpg.connect(notify_db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
        await connection.execute(f"PREPARE looked_for AS {sql}")
        written = ", ".join(_written(value) for value in args)
        plan = await connection.fetch(f"EXPLAIN EXECUTE looked_for({written})")  # the generic plan, whatever values
    finally:
        await connection.close()
    assert index in "\n".join(row[0] for row in plan)
