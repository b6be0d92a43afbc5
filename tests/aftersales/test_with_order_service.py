"""The refund contract with the real order service (and its WeChat Pay sandbox): events carried between the two
services' outboxes and consumers as the broker would, duplicates included.

- `aftersales.refund_requested.v1` refunds once per case, however often it arrives (a relay that crashed after
  publishing and before marking it published sends it again; a consumer that crashed before committing its offset
  reads it again), and a return is refunded on receipt, not on approval;
- `order.refunded.v1` carries the cause back and settles the case with what the provider actually refunded;
- the hold the order service keeps for express shipping opens and closes with the case.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.order import refunds
from services.order.models import CustomerOrder
from shared.events.envelope import Envelope
from tests.aftersales.conftest import CUSTOMER, MERCHANT, OPS, AftersalesHarness, aftersales_stack
from tests.order.conftest import OrderHarness, new_pay_keys, order_stack
from tests.support import EventFeed, eventually


@dataclass
class Pump:
    """Carries a service's published events (its outbox, in order) to another service's consumer."""

    source: async_sessionmaker[AsyncSession]
    target: EventFeed
    prefix: str
    cursor: int = 0

    async def run(self) -> list[Envelope]:
        async with self.source() as session:
            rows = (
                await session.execute(
                    text("SELECT id, envelope FROM outbox WHERE id > :c AND type LIKE :p ORDER BY id"),
                    {"c": self.cursor, "p": f"{self.prefix}%"},
                )
            ).all()
        sent = []
        for row_id, envelope in rows:
            event = Envelope.model_validate(envelope)
            await self.target.deliver(event)
            sent.append(event)
            self.cursor = row_id
        return sent


@pytest.fixture
async def both(
    db_url: str, aftersales_db_url: str, bootstrap: str
) -> AsyncIterator[tuple[OrderHarness, AftersalesHarness]]:
    async with (
        order_stack(db_url, bootstrap, new_pay_keys()) as order,
        aftersales_stack(aftersales_db_url, bootstrap) as aftersales,
    ):
        yield order, aftersales


async def test_refunds_go_through_the_order_service_once_per_case(
    both: tuple[OrderHarness, AftersalesHarness],
) -> None:
    order, h = both
    to_aftersales = Pump(order.sessionmaker, h.feed, "order.")
    to_order = Pump(h.sessionmaker, order.feed, "aftersales.")
    await order.store()
    sku = (await order.product())["skus"][0]["id"]
    placed = await order.paid_order(sku, quantity=2)
    oid = placed["id"]
    await order.act(oid, "accept")
    await order.deliver("delivery.delivered.v1", oid, carrier="dada")
    assert (await order.act(oid, "confirm-receipt", headers=CUSTOMER)).json()["status"] == "completed"
    await to_aftersales.run()

    case = (await h.apply(oid, lines=[{"sku_id": sku, "quantity": 1}], amount_fen=800, key="cold-noodles")).json()
    await to_order.run()
    assert (await order.order(oid))["open_aftersales"] == 1
    await h.act(case["id"], "approve")
    # The service "crashes" after committing the approval: the relay publishes the request twice, and the
    # publisher's retry (a new event id, same case and attempt) arrives too.
    sent = await to_order.run()
    assert [e.type for e in sent] == ["aftersales.approved.v1", "aftersales.refund_requested.v1"]
    asked = sent[1]
    await order.redeliver(asked)
    await order.redeliver(asked.model_copy(update={"id": uuid.uuid4()}))
    await order.timers.fire_due()

    async def refunded() -> bool:
        rows = await order.sql("SELECT status FROM refund WHERE cause LIKE 'aftersales:%'")
        return [r[0] for r in rows] == ["succeeded"]

    await eventually(refunded)
    assert await order.sql("SELECT cause, amount_fen FROM refund") == [(f"aftersales:{case['id']}", 800)]
    await to_aftersales.run()
    settled = await h.case(case["id"])
    assert (settled["state"], settled["agreed_fen"], settled["refunded_fen"]) == ("refunded", 800, 800)
    await to_order.run()
    assert (await order.order(oid))["open_aftersales"] == 0

    # A return of the other bowl: nothing is refunded on approval, the money goes back on receipt.
    back = (await h.apply(oid, type="return_refund", reason_code="no_longer_wanted",
                          lines=[{"sku_id": sku, "quantity": 1}])).json()  # fmt: skip
    assert back["asked_fen"] == 1500
    await h.act(back["id"], "approve")
    await h.act(back["id"], "ship-return", headers=MERCHANT, collected_by="rider-1")
    await to_order.run()
    await order.timers.fire_due()
    assert len(await order.sql("SELECT id FROM refund")) == 1
    await h.act(back["id"], "confirm-receipt")
    await to_order.run()
    await order.timers.fire_due()

    async def both_refunded() -> bool:
        return (await order.order(oid))["refunded_fen"] == 2300

    await eventually(both_refunded)
    await to_aftersales.run()
    assert (await h.case(back["id"]))["state"] == "refunded"
    assert (await order.order(oid))["status"] == "partially_refunded"


async def test_a_refund_the_order_cannot_make_comes_back_failed_and_ops_retry(
    both: tuple[OrderHarness, AftersalesHarness],
) -> None:
    order, h = both
    to_aftersales = Pump(order.sessionmaker, h.feed, "order.")
    to_order = Pump(h.sessionmaker, order.feed, "aftersales.")
    await order.store()
    sku = (await order.product())["skus"][0]["id"]
    oid = (await order.paid_order(sku, quantity=2))["id"]
    await order.act(oid, "accept")
    await order.deliver("delivery.delivered.v1", oid, carrier="dada")
    await to_aftersales.run()
    # Dispatch's event reaches both services: for the aftersales service it is the carrier's proof of delivery.
    await h.deliver("delivery.delivered.v1", oid, order_id=oid, delivery_id="d-1", status="delivered", carrier="dada")
    case = (await h.apply(oid, lines=[{"sku_id": sku, "quantity": 1}], amount_fen=1000)).json()
    # Before the request reaches it, the order service refunds the whole order by itself (a merchant's refund of
    # another cause): nothing is left for the case.
    async with order.sessionmaker() as session, session.begin():
        row = await session.get_one(CustomerOrder, oid)
        await refunds.request_refund(session, order.clock, row, cause="goodwill", amount_fen=row.total_fen,
                                     reason="整单退")  # fmt: skip
    await h.act(case["id"], "approve")
    await to_order.run()
    await to_aftersales.run()
    failed = await h.case(case["id"])
    assert (failed["state"], failed["next_actions"]["ops"]) == ("refund_failed", ["retry_refund"])
    retried = (await h.act(case["id"], "retry-refund", headers=OPS)).json()
    assert (retried["state"], retried["refund_attempt"]) == ("refunding", 2)
    await to_order.run()
    await to_aftersales.run()  # still nothing left: the second attempt fails the same way, under its own cause
    assert (await h.case(case["id"]))["state"] == "refund_failed"
    causes = [r[0] for r in await order.sql("SELECT cause FROM refund ORDER BY id")]
    assert causes == ["goodwill"]
    [first, second] = await h.outbox("aftersales.refund_requested.v1")
    assert (first["data"]["attempt"], second["data"]["attempt"]) == (1, 2)


async def test_an_approved_cancel_request_cancels_and_refunds_the_order(
    both: tuple[OrderHarness, AftersalesHarness],
) -> None:
    order, h = both
    to_aftersales = Pump(order.sessionmaker, h.feed, "order.")
    to_order = Pump(h.sessionmaker, order.feed, "aftersales.")
    await order.store()
    sku = (await order.product())["skus"][0]["id"]
    oid = (await order.paid_order(sku, quantity=2))["id"]
    await order.act(oid, "accept")
    await to_aftersales.run()
    case = (await h.apply(oid, type="cancel_request", reason_code="too_slow", lines=[])).json()
    total = (await order.order(oid))["total_fen"]
    assert case["asked_fen"] == total
    await h.act(case["id"], "approve")
    await to_order.run()
    assert (await order.order(oid))["status"] == "refunding"
    await order.timers.fire_due()

    async def refunded() -> bool:
        return (await order.order(oid))["status"] == "refunded"

    await eventually(refunded)
    assert await order.sql("SELECT cause, amount_fen FROM refund") == [(f"aftersales:{case['id']}", total)]
    await to_aftersales.run()
    done = await h.case(case["id"])
    assert (done["state"], done["refunded_fen"]) == ("refunded", total)
