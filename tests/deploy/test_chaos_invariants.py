"""The chaos invariants must not pass silently: each one holds on clean databases and flags a violation seeded by
hand into real, migrated service databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from deploy.chaos import invariants
from deploy.chaos.invariants import INVARIANTS, Databases, check_all

# A value for each column type, for the NOT NULL columns a seeded row does not care about.
FILLERS = {
    "text": "'x'",
    "integer": "0",
    "bigint": "0",
    "boolean": "false",
    "double precision": "0",
    "jsonb": "'{}'::jsonb",
    "uuid": "gen_random_uuid()",
    "bytea": "'\\x00'::bytea",
    "timestamp with time zone": "now()",
    "timestamp without time zone": "now()",
}


async def insert(connection: asyncpg.Connection, table: str, **values: Any) -> None:
    """One row with `values`, every other NOT NULL column without a default filled in."""
    columns = await connection.fetch(
        """SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1
           AND is_nullable = 'NO' AND column_default IS NULL""",
        table,
    )
    fill = {c["column_name"]: FILLERS[c["data_type"]] for c in columns if c["column_name"] not in values}
    names = [*values, *fill]
    placeholders = [f"${n}" for n in range(1, len(values) + 1)] + list(fill.values())
    sql = f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({", ".join(placeholders)})'  # noqa: S608 - test data
    await connection.execute(sql, *values.values())


@pytest.fixture
async def dbs(
    db_url: str, redemption_db_url: str, dispatch_db_url: str, aftersales_db_url: str, notify_db_url: str
) -> AsyncIterator[Databases]:
    opened: Databases = {}
    urls = {
        "order": db_url,
        "redemption": redemption_db_url,
        "dispatch": dispatch_db_url,
        "aftersales": aftersales_db_url,
        "notify": notify_db_url,
    }
    for service, url in urls.items():
        opened[service] = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        # Seeded rows skip foreign keys (no store, no code row needed for a ledger row).
        await opened[service].execute("SET session_replication_role = replica")
    yield opened
    for connection in opened.values():
        await connection.close()


async def paid_order(dbs: Databases, order_id: str, status: str, **extra: Any) -> None:
    values = {"id": order_id, "status": status, "total_fen": 1000} | extra
    await insert(dbs["order"], "customer_order", paid_at=_now(), **values)
    await insert(dbs["order"], "payment", order_id=order_id, out_trade_no=order_id, amount_fen=1000, status="paid")


def _now() -> datetime:
    return datetime.now(UTC)


async def stuck_order(dbs: Databases) -> None:
    await paid_order(dbs, "o-stuck", "dispatching", updated_at=_now() - timedelta(hours=1))


async def refund_twice(dbs: Databases) -> None:
    await paid_order(dbs, "o-refund", "refunded", refunded_fen=2000)
    for number in (1, 2):
        await insert(dbs["order"], "refund", order_id="o-refund", out_refund_no=f"r{number}", cause=f"c{number}",
                     amount_fen=1000, status="succeeded")  # fmt: skip


async def over_redeemed(dbs: Databases) -> None:
    code_id = "5f1c2a8e-0000-4000-8000-000000000001"
    await insert(dbs["redemption"], "code", id=code_id, code="123456", kind="voucher", status="redeemed",
                 uses_total=1, uses_left=0)  # fmt: skip
    for number in (1, 2):
        await insert(dbs["redemption"], "redemption", code_id=code_id, count=1, request_no=f"q{number}")


async def status_move_twice(dbs: Databases) -> None:
    await paid_order(dbs, "o-twice", "completed")
    for _ in range(2):
        await insert(dbs["order"], "order_status_change", order_id="o-twice", from_status="paid",
                     to_status="accepted", action="accept")  # fmt: skip


async def unpublished(dbs: Databases) -> None:
    await insert(dbs["dispatch"], "outbox", event_id="5f1c2a8e-0000-4000-8000-000000000002", type="delivery.created")


async def overdue_timer(dbs: Databases) -> None:
    await insert(dbs["redemption"], "timer", kind="expire", key="k", due_at=_now() - timedelta(hours=1))


async def case_refunded_twice(dbs: Databases) -> None:
    await paid_order(dbs, "o-case", "partially_refunded", refunded_fen=600)
    await insert(dbs["aftersales"], "aftersales_case", id="as-1", order_id="o-case", refunded_fen=300)
    for attempt, cause in enumerate(("aftersales:as-1", "aftersales:as-1#2"), start=1):
        await insert(dbs["order"], "refund", order_id="o-case", out_refund_no=f"ra{attempt}", cause=cause,
                     amount_fen=300, status="succeeded")  # fmt: skip


async def notice_sent_twice(dbs: Databases) -> None:
    notice = "5f1c2a8e-0000-4000-8000-0000000000a1"
    await insert(dbs["notify"], "notice", id=notice, order_id="o-n", key="delivered", status="sent")
    for _ in range(2):
        await insert(dbs["notify"], "notice_attempt", notice_id=notice, channel="wechat", result="sent")


async def grant_spent_twice(dbs: Databases) -> None:
    grant = "5f1c2a8e-0000-4000-8000-0000000000b1"
    await insert(dbs["notify"], "subscribe_grant", id=grant, openid="c", template_id="t", source="client",
                 granted_at=_now())  # fmt: skip
    for key in ("delivering", "delivered"):
        await insert(dbs["notify"], "notice", order_id="o-g", key=key, status="sent", grant_id=grant)


async def notice_stuck(dbs: Databases) -> None:
    await insert(dbs["notify"], "notice", order_id="o-s", key="delivered", status="pending",
                 next_attempt_at=_now() - timedelta(hours=1))  # fmt: skip


SEEDS: dict[str, tuple[Callable[[Databases], Awaitable[None]], Callable[[Databases], Awaitable[Any]]]] = {
    "stuck order": (stuck_order, invariants.paid_orders_settle),
    "refund twice": (refund_twice, invariants.no_refund_paid_twice),
    "over-redeemed code": (over_redeemed, invariants.no_code_over_redeemed),
    "status move twice": (status_move_twice, invariants.no_event_applied_twice),
    "unpublished outbox row": (unpublished, invariants.outboxes_drained),
    "overdue timer": (overdue_timer, invariants.no_event_dead_lettered),
    "after-sales case refunded twice": (case_refunded_twice, invariants.aftersales_refunds_match),
    "notice sent twice": (notice_sent_twice, invariants.no_notice_sent_twice),
    "grant spent on two notices": (grant_spent_twice, invariants.no_notice_sent_twice),
    "notice never sent": (notice_stuck, invariants.no_notice_sent_twice),
}


async def test_every_invariant_holds_on_clean_databases(dbs: Databases) -> None:
    findings = await check_all(dbs)
    assert [f.invariant for f in findings if not f.ok] == [], findings
    assert len(findings) == len(INVARIANTS)


@pytest.mark.parametrize("seed", SEEDS)
async def test_each_invariant_flags_its_seeded_violation(dbs: Databases, seed: str) -> None:
    plant, invariant = SEEDS[seed]
    await plant(dbs)
    finding = await invariant(dbs)
    assert finding.violations >= 1, finding
    assert finding.samples


async def test_an_invariant_that_cannot_run_is_a_violation(dbs: Databases) -> None:
    async def broken(_: Databases) -> invariants.Finding:
        raise RuntimeError("no such table")

    [finding] = await check_all(dbs, [broken])
    assert not finding.ok
    assert "could not check" in finding.detail
