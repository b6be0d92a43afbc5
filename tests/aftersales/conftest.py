"""The aftersales service on a real port over a fresh migrated database, workers off: tests move a clock and fire
timers, and hand events to the real consumer path (inbox included), so nothing depends on sleeps. Orders reach it
as the order service's events would (`order_event`); `pump` carries real events between two services' outboxes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.aftersales.app import create_app
from services.aftersales.settings import AftersalesSettings
from shared.clock import FrozenClock
from shared.events.envelope import Envelope, new_event
from shared.keys import public_pem
from shared.timers import TimerWorker
from tests.order.conftest import NOON_SHANGHAI
from tests.support import JWT_KEY, EventFeed, bearer, run_sql, serve

CUSTOMER = bearer("customer", "openid-alice")
OTHER_CUSTOMER = bearer("customer", "openid-bob")
MERCHANT = bearer("merchant", "staff-1", "m-1", store_ids=["s-1"])
OTHER_STORE_STAFF = bearer("merchant", "staff-9", "m-1", store_ids=["s-9"])
OTHER_MERCHANT = bearer("merchant", "staff-2", "m-2")
OPS = bearer("ops", "ops-1")
RIDER = bearer("rider", "rider-1", "m-1")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SOURCES = {"delivery": "dispatch", "code": "redemption"}


def order_snapshot(order_id: str, **fields: Any) -> dict[str, Any]:
    """An order as the order service's events carry it: two bowls at 15 yuan and an egg at 3, 5 yuan delivery."""
    items = fields.pop("items", [
        {"sku_id": "sku-bowl", "product_id": "p-1", "name": "牛肉面", "price_fen": 1500, "quantity": 2},
        {"sku_id": "sku-egg", "product_id": "p-2", "name": "卤蛋", "price_fen": 300, "quantity": 1},
    ])  # fmt: skip
    items_fen = sum(i["price_fen"] * i["quantity"] for i in items)
    fee = fields.pop("delivery_fee_fen", 500)
    snapshot = {
        "order_id": order_id,
        "status": "completed",
        "fulfilment_mode": "delivery",
        "customer_id": "openid-alice",
        "merchant_id": "m-1",
        "store": {"id": "s-1", "name": "Store s-1"},
        "items": items,
        "amounts": {"items_fen": items_fen, "delivery_fee_fen": fee, "total_fen": items_fen + fee,
                    "refunded_fen": fields.pop("refunded_fen", 0)},
        "paid_at": "2026-11-18T03:00:00+00:00",
    }  # fmt: skip
    return snapshot | fields


@dataclass
class AftersalesHarness:
    client: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    timers: TimerWorker
    feed: EventFeed
    sent: list[Envelope] = field(default_factory=list)

    async def deliver(self, event_type: str, subject: str, **data: Any) -> Envelope:
        source = SOURCES.get(event_type.split(".")[0], event_type.split(".")[0])
        if source != "order":  # deliveries and codes name their order's tenant, as order_snapshot's defaults
            data = {"merchant_id": "m-1", "store_id": "s-1", "customer_id": "openid-alice", **data}
        event = new_event(event_type, source=source, subject=subject, data=data, clock=self.clock)
        await self.feed.deliver(event)
        return event

    async def redeliver(self, event: Envelope) -> None:
        await self.feed.deliver(event)

    async def order(self, order_id: str, event: str = "order.completed.v1", **fields: Any) -> dict[str, Any]:
        """The order as its event tells the service (completed, so delivered, by default)."""
        snapshot = order_snapshot(order_id, **fields)
        await self.deliver(event, order_id, **snapshot)
        return snapshot

    async def apply(
        self, order_id: str, *, headers: dict[str, str] = CUSTOMER, expect: int | None = 201, key: str | None = None,
        **body: Any,
    ) -> httpx.Response:  # fmt: skip
        payload = {"order_id": order_id, "type": "refund_only", "reason_code": "late_delivery",
                   "lines": [{"sku_id": "sku-bowl", "quantity": 1}]} | body  # fmt: skip
        extra = {"Idempotency-Key": key} if key else {}
        response = await self.client.post("/v1/aftersales/cases", json=payload, headers=headers | extra)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    async def act(
        self, case_id: str, action: str, headers: dict[str, str] = MERCHANT, expect: int | None = 200, **body: Any
    ) -> httpx.Response:
        response = await self.client.post(f"/v1/aftersales/cases/{case_id}/{action}", json=body or None,
                                          headers=headers)  # fmt: skip
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    async def case(self, case_id: str, headers: dict[str, str] = OPS) -> dict[str, Any]:
        response = await self.client.get(f"/v1/aftersales/cases/{case_id}", headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def advance(self, delta: timedelta) -> int:
        self.clock.advance(delta)
        return await self.timers.fire_due()

    async def sql(self, statement: str, **params: Any) -> Any:
        return await run_sql(self.sessionmaker, statement, **params)

    async def events(self, order_id: str) -> list[str]:
        rows = await self.sql("SELECT type FROM outbox WHERE key = :k ORDER BY id", k=order_id)
        return [row[0] for row in rows]

    async def outbox(self, event_type: str) -> list[dict[str, Any]]:
        rows = await self.sql("SELECT envelope FROM outbox WHERE type = :t ORDER BY id", t=event_type)
        return [row[0] for row in rows]

    async def refund_succeeded(self, order_id: str, case_id: str, amount_fen: int, attempt: int = 1,
                               refunded_total: int | None = None) -> Envelope:  # fmt: skip
        """The order service's answer to a refund request it made: `order.refunded.v1` with the case's cause."""
        cause = f"aftersales:{case_id}" if attempt == 1 else f"aftersales:{case_id}#{attempt}"
        snapshot = order_snapshot(order_id, refunded_fen=refunded_total if refunded_total is not None else amount_fen,
                                  status="partially_refunded")  # fmt: skip
        return await self.deliver(
            "order.refunded.v1",
            order_id,
            **snapshot,
            refund={"out_refund_no": f"{order_id}R1", "cause": cause, "amount_fen": amount_fen},
        )


@contextlib.asynccontextmanager
async def aftersales_stack(db_url: str, bootstrap: str, **overrides: Any) -> AsyncIterator[AftersalesHarness]:
    clock = FrozenClock(NOON_SHANGHAI)
    settings = AftersalesSettings(
        database_url=db_url, kafka_bootstrap_servers=bootstrap, jwt_public_keys=public_pem(JWT_KEY),  # type: ignore[arg-type]
        run_workers=False, **overrides,
    )  # fmt: skip
    app = create_app(settings, clock=clock)
    async with serve(app) as url:
        sessionmaker = app.state.sessionmaker
        reactions = app.state.reactions
        timers = TimerWorker(service="aftersales", sessionmaker=sessionmaker, clock=clock,
                             handlers=reactions.timer_handlers())  # fmt: skip
        feed = EventFeed(sessionmaker, bootstrap, reactions.event_handlers())
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield AftersalesHarness(client, sessionmaker, clock, timers, feed)
        finally:
            await feed.close()


@pytest.fixture
async def aftersales(aftersales_db_url: str, bootstrap: str) -> AsyncIterator[AftersalesHarness]:
    async with aftersales_stack(aftersales_db_url, bootstrap) as stack:
        yield stack
