"""What must hold after the faults, checked by SQL against each service's database once the system has drained.

Each invariant is an async function of the service → connection map, with a docstring saying what it checks, and
returns a `Finding` (violations counted, with sample ids). `INVARIANTS` is the hook: the after-sales and notify
services append theirs (e.g. `INVARIANTS.append(no_notice_sent_twice)`) so `make chaos` checks them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

Databases = dict[str, asyncpg.Connection]  # service name → a connection to its database

# How long a pending timer may be overdue, or a non-final order may sit unchanged, before it counts as stuck: the
# timer workers poll every few seconds, so anything this late after the drain is not coming on its own.
STUCK_AFTER_SECONDS = 120
SAMPLES = 5
FINAL_ORDER_STATUSES = ("completed", "cancelled", "refunded", "partially_refunded")


@dataclass
class Finding:
    invariant: str
    checked: int  # rows (orders, codes, events ...) looked at
    violations: int = 0
    samples: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.violations == 0


async def _has_table(connection: asyncpg.Connection, table: str) -> bool:
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


def _finding(name: str, checked: int, bad: list[str], detail: str) -> Finding:
    return Finding(name, checked, len(bad), bad[:SAMPLES], detail if bad else "")


async def paid_orders_settle(dbs: Databases) -> Finding:
    """Every paid order is final (completed, cancelled, refunded, partially refunded) or still progressing.

    Progressing means some part of the platform will move it without anyone being asked: a pending timer keyed by
    the order (accept timeout, auto-complete, trade close ...) that is not overdue by more than STUCK_AFTER_SECONDS,
    a refund not yet settled, a live delivery at dispatch changed within STUCK_AFTER_SECONDS, or the order itself
    changed that recently. A paid order with none of these is stuck: an event or a timer was lost."""
    orders = dbs["order"]
    rows = await orders.fetch(
        """
        SELECT o.id FROM customer_order o
        WHERE o.paid_at IS NOT NULL AND o.status <> ALL($1::text[])
          AND o.updated_at < now() - make_interval(secs => $2)
          AND NOT EXISTS (SELECT 1 FROM timer t WHERE t.key = o.id AND t.fired_at IS NULL
                          AND t.cancelled_at IS NULL AND t.due_at > now() - make_interval(secs => $2))
          AND NOT EXISTS (SELECT 1 FROM refund r WHERE r.order_id = o.id AND r.status IN ('pending', 'processing'))
        ORDER BY o.id
        """,
        list(FINAL_ORDER_STATUSES),
        STUCK_AFTER_SECONDS,
    )
    suspects = [row["id"] for row in rows]
    if suspects and "dispatch" in dbs:
        moving = await dbs["dispatch"].fetch(
            """SELECT DISTINCT order_id FROM delivery WHERE order_id = ANY($1::text[]) AND ended_at IS NULL
               AND updated_at > now() - make_interval(secs => $2)""",
            suspects,
            STUCK_AFTER_SECONDS,
        )
        suspects = sorted(set(suspects) - {row["order_id"] for row in moving})
    paid = await orders.fetchval("SELECT count(*) FROM customer_order WHERE paid_at IS NOT NULL")
    statuses = await orders.fetch(
        "SELECT status, count(*) AS n FROM customer_order WHERE paid_at IS NOT NULL GROUP BY status ORDER BY status"
    )
    detail = "stuck (not final, nothing moving it): " + ", ".join(f"{r['status']}={r['n']}" for r in statuses)
    return _finding("paid orders final or progressing", paid, suspects, detail)


async def no_refund_paid_twice(dbs: Databases) -> Finding:
    """No order refunded more than it was paid, and no provider refund recorded twice: per order, the succeeded
    refunds add up to at most the captured payment and equal the order's `refunded_fen`; one refund row per
    (order, cause) and per provider refund id."""
    orders = dbs["order"]
    over = await orders.fetch(
        """
        SELECT o.id FROM customer_order o
        JOIN payment p ON p.order_id = o.id AND p.status = 'paid'
        LEFT JOIN LATERAL (SELECT coalesce(sum(amount_fen), 0) AS fen FROM refund r
                           WHERE r.order_id = o.id AND r.status = 'succeeded') s ON true
        WHERE s.fen > p.amount_fen OR o.refunded_fen > p.amount_fen OR o.refunded_fen <> s.fen
        """
    )
    doubled = await orders.fetch(
        """SELECT order_id || ' cause ' || cause AS id FROM refund GROUP BY order_id, cause HAVING count(*) > 1
           UNION ALL
           SELECT 'provider refund ' || refund_id FROM refund WHERE refund_id IS NOT NULL
           GROUP BY refund_id HAVING count(*) > 1"""
    )
    checked = await orders.fetchval("SELECT count(*) FROM refund")
    bad = [row["id"] for row in over] + [row["id"] for row in doubled]
    return _finding("no refund paid twice", checked, bad, "refunded more than paid, or a refund recorded twice")


async def no_code_over_redeemed(dbs: Databases) -> Finding:
    """No code redeemed beyond its uses: the live (not reversed) ledger rows of a code add up to at most its
    `uses_total`, and exactly to the uses it has spent (`uses_total - uses_left`), so no redemption was applied
    without its ledger row or the other way round."""
    redemption = dbs["redemption"]
    rows = await redemption.fetch(
        """
        SELECT c.id::text AS id FROM code c
        LEFT JOIN LATERAL (SELECT coalesce(sum(count), 0) AS used FROM redemption r
                           WHERE r.code_id = c.id AND r.reversed_at IS NULL) l ON true
        WHERE l.used > c.uses_total OR c.uses_left < 0 OR l.used <> c.uses_total - c.uses_left
        """
    )
    checked = await redemption.fetchval("SELECT count(*) FROM code")
    return _finding("no code redeemed beyond its uses", checked, [r["id"] for r in rows], "ledger vs uses_left")


async def no_event_applied_twice(dbs: Databases) -> Finding:
    """No event applied twice. The inbox holds one row per (consumer, event id) by its primary key, so the check is
    on the effects a replayed event would double: an order status move recorded twice (same order, same from → to,
    where nothing sent the order back to repeat it), more than one code of a kind issued for one order without
    replacing the first, and more than one delivery for an order whose history shows no delivery ended."""
    bad: list[str] = []
    orders = dbs["order"]
    moves = await orders.fetch(
        """
        SELECT c.order_id || ' ' || coalesce(c.from_status, '-') || '->' || c.to_status AS id
        FROM order_status_change c
        WHERE NOT EXISTS (SELECT 1 FROM order_status_change e WHERE e.order_id = c.order_id
                          AND e.action IN ('delivery_ended', 'pickup_reversed'))
        GROUP BY c.order_id, c.from_status, c.to_status HAVING count(*) > 1
        """
    )
    bad += [f"status move twice: {row['id']}" for row in moves]
    checked = await orders.fetchval("SELECT count(*) FROM order_status_change")
    if "redemption" in dbs:
        codes = await dbs["redemption"].fetch(
            """SELECT order_id || ' ' || kind AS id FROM code WHERE order_id IS NOT NULL AND replaces IS NULL
               GROUP BY order_id, kind HAVING count(*) > 1"""
        )
        bad += [f"code issued twice: {row['id']}" for row in codes]
    if "dispatch" in dbs:
        ended = await orders.fetch("SELECT DISTINCT order_id FROM order_status_change WHERE action = 'delivery_ended'")
        deliveries = await dbs["dispatch"].fetch(
            """SELECT order_id FROM delivery WHERE NOT (order_id = ANY($1::text[]))
               GROUP BY order_id HAVING count(*) > 1""",
            [row["order_id"] for row in ended],
        )
        bad += [f"two deliveries: {row['order_id']}" for row in deliveries]
    return _finding("no event applied twice", checked, bad, "an effect of one event found twice")


async def outboxes_drained(dbs: Databases) -> Finding:
    """No outbox row left unpublished after the drain, in any service: each was committed with its state change and
    must reach the broker however the relay, the broker or the database were interrupted."""
    bad: list[str] = []
    checked = 0
    for service, connection in sorted(dbs.items()):
        if not await _has_table(connection, "outbox"):
            continue
        checked += await connection.fetchval("SELECT count(*) FROM outbox")
        rows = await connection.fetch("SELECT id, type FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 50")
        bad += [f"{service} outbox #{row['id']} {row['type']}" for row in rows]
    return _finding("no outbox row left unpublished", checked, bad, "unpublished after the drain")


async def no_event_dead_lettered(dbs: Databases) -> Finding:
    """No event held as a dead letter, and no timer overdue by more than STUCK_AFTER_SECONDS, in any service: a
    handler or a timer that kept failing across the faults would leave its effect undone until an operator acts."""
    bad: list[str] = []
    checked = 0
    for service, connection in sorted(dbs.items()):
        if await _has_table(connection, "parked_event"):
            checked += await connection.fetchval("SELECT count(*) FROM parked_event")
            rows = await connection.fetch("SELECT consumer, type, subject FROM parked_event WHERE held LIMIT 20")
            bad += [f"{service} held {row['consumer']} {row['type']} {row['subject']}" for row in rows]
        if await _has_table(connection, "timer"):
            checked += await connection.fetchval("SELECT count(*) FROM timer")
            rows = await connection.fetch(
                """SELECT kind, key FROM timer WHERE fired_at IS NULL AND cancelled_at IS NULL
                   AND due_at < now() - make_interval(secs => $1) LIMIT 20""",
                STUCK_AFTER_SECONDS,
            )
            bad += [f"{service} timer {row['kind']}:{row['key']} overdue" for row in rows]
    return _finding("no dead letter, no overdue timer", checked, bad, "left for an operator")


async def aftersales_refunds_match(dbs: Databases) -> Finding:
    """Each after-sales case's refund is exactly what the order service refunded for it, once: per case, the
    succeeded refunds whose cause names the case (`aftersales:<case>`, or `aftersales:<case>#<attempt>` for a retry
    ops asked for) add up to the case's `refunded_fen` (none for a case that recorded none), and the cases of one
    order never refunded more than the order's total."""
    if "aftersales" not in dbs or not await _has_table(dbs["aftersales"], "aftersales_case"):
        return _finding("after-sales refunds match the order's", 0, [], "")
    cases = {
        row["id"]: row["refunded_fen"] or 0
        for row in await dbs["aftersales"].fetch("SELECT id, refunded_fen FROM aftersales_case")
    }
    made = {
        row["case_id"]: row["fen"]
        for row in await dbs["order"].fetch(
            """SELECT split_part(substr(cause, length('aftersales:') + 1), '#', 1) AS case_id, sum(amount_fen) AS fen
               FROM refund WHERE status = 'succeeded' AND cause LIKE 'aftersales:%' GROUP BY 1"""
        )
    }
    bad = [f"case {case}" for case in sorted(set(cases) | set(made)) if cases.get(case, 0) != made.get(case, 0)]
    over = await dbs["aftersales"].fetch(
        """SELECT 'order ' || c.order_id AS id FROM aftersales_case c JOIN order_view v ON v.order_id = c.order_id
           GROUP BY c.order_id, v.total_fen HAVING sum(coalesce(c.refunded_fen, 0)) > v.total_fen"""
    )
    bad += [row["id"] for row in over]
    return _finding(
        "after-sales refunds match the order's", len(cases), bad, "a case's refund differs from what was refunded"
    )


async def no_notice_sent_twice(dbs: Databases) -> Finding:
    """A customer hears of each state of an order once: one notice per (order, state) (a unique key), at most one
    successful send per notice, and no one-time grant spent on two notices. And none is left behind: no notice still
    pending or mid-send once its retry was due long ago."""
    if "notify" not in dbs or not await _has_table(dbs["notify"], "notice"):
        return _finding("no customer notice sent twice", 0, [], "")
    notify = dbs["notify"]
    checked = int(await notify.fetchval("SELECT count(*) FROM notice") or 0)
    twice = await notify.fetch(
        """SELECT 'notice ' || notice_id AS id FROM notice_attempt WHERE result = 'sent'
           GROUP BY notice_id HAVING count(*) > 1"""
    )
    shared_grant = await notify.fetch(
        """SELECT 'grant ' || n.grant_id AS id FROM notice n JOIN subscribe_grant g ON g.id = n.grant_id
           WHERE NOT g.long_term AND n.status = 'sent' GROUP BY n.grant_id HAVING count(*) > 1"""
    )
    stuck = await notify.fetch(
        f"""SELECT 'notice ' || id AS id FROM notice WHERE status IN ('pending', 'sending')
            AND coalesce(lease_until, next_attempt_at) < now() - interval '{STUCK_AFTER_SECONDS} seconds'"""  # noqa: S608
    )
    bad = [row["id"] for row in (*twice, *shared_grant, *stuck)]
    return _finding("no customer notice sent twice", checked, bad, "a notice sent twice, a grant spent twice, or stuck")


Invariant = Callable[[Databases], Awaitable[Finding]]

# The hook: each service's invariants, checked after every chaos run.
INVARIANTS: list[Invariant] = [
    paid_orders_settle,
    no_refund_paid_twice,
    no_code_over_redeemed,
    no_event_applied_twice,
    outboxes_drained,
    no_event_dead_lettered,
    aftersales_refunds_match,
    no_notice_sent_twice,
]


async def check_all(dbs: Databases, invariants: list[Invariant] | None = None) -> list[Finding]:
    """Runs every invariant; one that cannot run (its SQL failed) is reported as a violation, never skipped."""
    findings = []
    for invariant in invariants if invariants is not None else INVARIANTS:
        try:
            findings.append(await invariant(dbs))
        except Exception as exc:
            findings.append(Finding(invariant.__name__, 0, 1, [], f"could not check: {type(exc).__name__}: {exc}"))
    return findings
