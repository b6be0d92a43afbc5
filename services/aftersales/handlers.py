"""How the aftersales service learns of orders and deliveries, and settles refunds, from other services' events.

Handlers run in the consumer's transaction next to the inbox row, so each event has one effect however often it
is delivered. Each reads the narrow view it declares (services/aftersales/consumed.py, registered with `handles`); data
that does not fit is dead-lettered, never a silent skip.

Events consumed (subject = order id):
- `order.*.v1` (each carries the whole order) build the service's own view of the order: customer, store, status,
  lines, amounts and what was refunded; `order.completed.v1` starts the application window if nothing did before;
- `order.refunded.v1` / `order.refund_failed.v1` with a cause `aftersales:<case>[#attempt]` settle that case's
  refund (what the provider actually refunded is recorded apart from what was agreed);
- `delivery.picked_up/delivering.v1` close the cancel-request window; `delivery.delivered.v1` is the carrier's
  proof of delivery; `code.redeemed.v1` of a `finish` code is the own rider's handover (who, when, which device);
- `delivery.cancelled.v1` (by the carrier, or no rider at all) and `delivery.returned.v1` open a non-delivery case
  that grants compensation by the tier table, once per order (see `compensation`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Integer, Table, Text, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.aftersales import compensation
from services.aftersales.cases import Cases
from services.aftersales.consumed import (
    DeliveryCancelledView,
    DeliveryView,
    OrderEventView,
    OrderRefundedView,
    OrderRefundFailedView,
    RedeemedView,
)
from services.aftersales.models import OrderView, OrderViewLine
from shared.clock import Clock
from shared.events.contracts import EventHandler, handles
from shared.events.envelope import Envelope
from shared.events.models import Timer
from shared.timers import TimerHandler

log = logging.getLogger(__name__)

ORDER_EVENTS = tuple(
    f"order.{name}.v1"
    for name in ("placed", "paid", "accepted", "rejected", "ready", "shipped", "cancelled", "completed", "refunded",
                 "reopened", "reviewed", "refund_failed")
)  # fmt: skip
PICKED_UP = ("delivery.picked_up.v1", "delivery.delivering.v1")


def _finish_code(data: RedeemedView) -> bool:
    return bool(data.order_id) and data.kind == "finish"


class ViewNotReady(LookupError):
    """A delivery's end for an order the service has not heard of: retried, as the order's own events come on another
    topic and may be behind (compensation needs the order's amounts)."""


# A view started from a delivery or code event, before the order's own events (another topic, which a restarted
# consumer may read behind): those then write the order's facts over it.
PLACEHOLDER_TIME = datetime(2000, 1, 1, tzinfo=UTC)

# The statements every order event runs, built once (building an upsert with its `excluded` columns cost about 1.5 ms
# of CPU a call, several times what running it does).
_VIEW = cast(Table, OrderView.__table__)  # Core, not ORM: run as one plain statement
_ORDER_FACTS = (
    "customer_id", "merchant_id", "store_id", "status", "fulfilment_mode", "items_fen", "delivery_fee_fen",
    "total_fen", "updated_at",
)  # fmt: skip
_order_facts = insert(_VIEW).values(
    order_id=bindparam("order_id"),
    proofs=[],
    refunded_fen=bindparam("refunded_fen"),
    paid_at=bindparam("paid_at"),
    **{name: bindparam(name) for name in _ORDER_FACTS},
)
# An order's facts as its latest event tells them. Money refunded only grows; a payment time once known stays.
_WRITE_ORDER_FACTS = _order_facts.on_conflict_do_update(
    index_elements=[_VIEW.c.order_id],
    set_={
        **{name: _order_facts.excluded[name] for name in _ORDER_FACTS},
        "refunded_fen": func.greatest(_VIEW.c.refunded_fen, _order_facts.excluded.refunded_fen),
        "paid_at": func.coalesce(_VIEW.c.paid_at, _order_facts.excluded.paid_at),
    },
)
_LINE = cast(Table, OrderViewLine.__table__)
_LINE_FACTS = ("name", "price_fen", "quantity")
_lines = (
    func.unnest(
        bindparam("sku_ids", type_=ARRAY(Text)),
        bindparam("names", type_=ARRAY(Text)),
        bindparam("prices", type_=ARRAY(Integer)),
        bindparam("quantities", type_=ARRAY(Integer)),
    )
    .table_valued("sku_id", *_LINE_FACTS)
    .render_derived()
)
_order_lines = insert(_LINE).from_select(
    ["order_id", "sku_id", *_LINE_FACTS],
    select(bindparam("order_id", type_=Text), _lines.c.sku_id, *(_lines.c[name] for name in _LINE_FACTS)),
)
# An order's facts and its lines, in one statement. The lines are set when the order is placed: each event carries
# them again, and they are written only when new or different (a delete and an insert per line per event had been
# most of this handler's writes). The view's row, inserted in the statement's CTE, is there for the lines' foreign
# key, which is checked at the statement's end.
_WRITE_ORDER_FACTS_AND_LINES = _order_lines.on_conflict_do_update(
    index_elements=[_LINE.c.order_id, _LINE.c.sku_id],
    set_={name: _order_lines.excluded[name] for name in _LINE_FACTS},
    where=or_(*(_LINE.c[name].is_distinct_from(_order_lines.excluded[name]) for name in _LINE_FACTS)),
).add_cte(_WRITE_ORDER_FACTS.cte("facts"))
_started = insert(OrderView).values(
    order_id=bindparam("order_id"),
    customer_id=bindparam("customer_id"),
    merchant_id=bindparam("merchant_id"),
    store_id=bindparam("store_id"),
    status="",
    fulfilment_mode="",
    items_fen=0,
    delivery_fee_fen=0,
    total_fen=0,
    proofs=[],
    updated_at=PLACEHOLDER_TIME,
)
# The order's view, started from an event's own tenant facts unless it is there, and locked (the upsert's row lock).
_START_VIEW = (
    _started.on_conflict_do_update(index_elements=[OrderView.order_id], set_={"order_id": _started.excluded.order_id})
    .returning(OrderView)
    .execution_options(populate_existing=True)
)


class AftersalesReactions:
    def __init__(self, cases: Cases, clock: Clock) -> None:
        self.cases = cases
        self.clock = clock

    def event_handlers(self) -> dict[str, EventHandler]:
        handlers: dict[str, EventHandler] = dict.fromkeys(ORDER_EVENTS, handles(OrderEventView, self.on_order_event))
        handlers["order.refunded.v1"] = handles(OrderRefundedView, self.on_order_event)
        handlers["order.refund_failed.v1"] = handles(OrderRefundFailedView, self.on_order_event)
        for event_type in PICKED_UP:
            handlers[event_type] = handles(DeliveryView, self.on_picked_up)
        handlers["delivery.delivered.v1"] = handles(DeliveryView, self.on_delivered)
        handlers["delivery.returned.v1"] = handles(DeliveryView, self.on_not_delivered)
        handlers["delivery.cancelled.v1"] = handles(DeliveryCancelledView, self.on_not_delivered)
        handlers["code.redeemed.v1"] = handles(RedeemedView, self.on_finish_code, concerns=_finish_code)
        return handlers

    def timer_handlers(self) -> dict[str, TimerHandler]:
        return {"aftersales.deadline": self.on_deadline}

    async def on_deadline(self, session: AsyncSession, timer: Timer) -> None:
        await self.cases.on_deadline(session, timer)

    # --- orders -----------------------------------------------------------------------------------------------

    async def on_order_event(self, session: AsyncSession, event: Envelope, data: OrderEventView) -> None:
        facts = {
            "order_id": data.order_id,
            "customer_id": data.customer_id,
            "merchant_id": data.merchant_id,
            "store_id": data.store.id,
            "status": data.status,
            "fulfilment_mode": data.fulfilment_mode,
            "items_fen": data.amounts.items_fen,
            "delivery_fee_fen": data.amounts.delivery_fee_fen,
            "total_fen": data.amounts.total_fen,
            "refunded_fen": data.amounts.refunded_fen,
            "paid_at": data.paid_at,
            "updated_at": event.time,
        }
        if data.items:
            items = list({item.sku_id: item for item in data.items}.values())  # a row each (the last, as published)
            lines = {
                "sku_ids": [item.sku_id for item in items],
                "names": [item.name for item in items],
                "prices": [item.price_fen for item in items],
                "quantities": [item.quantity for item in items],
            }
            await session.execute(_WRITE_ORDER_FACTS_AND_LINES, facts | lines)
        else:
            await session.execute(_WRITE_ORDER_FACTS, facts)
        if event.type == "order.completed.v1":
            view = await session.get_one(OrderView, data.order_id, with_for_update=True)
            view.received_at = view.received_at or event.time
        await session.flush()
        if isinstance(data, OrderRefundedView | OrderRefundFailedView):
            await self.cases.on_refund_outcome(
                session, data.refund.cause, succeeded=event.type == "order.refunded.v1",
                amount_fen=data.refund.amount_fen, error=getattr(data.refund, "error", ""),
            )  # fmt: skip

    async def _view(self, session: AsyncSession, order_id: str) -> OrderView:
        view = await session.scalar(select(OrderView).where(OrderView.order_id == order_id).with_for_update())
        if view is None:
            raise ViewNotReady(f"no order {order_id} in the view yet")
        return view

    async def _started_view(
        self, session: AsyncSession, order_id: str, merchant_id: str, store_id: str, customer_id: str
    ) -> OrderView:
        """The order's view, locked; started from the event's own tenant facts when the order's events are behind
        (a handover or a pickup is recorded at once instead of holding the delivery topic's partition, which would
        also hold back the order topic's on the same consumer until the event was dead-lettered)."""
        view = await session.scalar(
            _START_VIEW,
            {"order_id": order_id, "customer_id": customer_id, "merchant_id": merchant_id, "store_id": store_id},
        )
        assert view is not None
        return view

    # --- deliveries and handovers -----------------------------------------------------------------------------

    async def on_picked_up(self, session: AsyncSession, event: Envelope, data: DeliveryView) -> None:
        view = await self._started_view(session, data.order_id, data.merchant_id, data.store_id, data.customer_id)
        view.picked_up_at = view.picked_up_at or event.time
        view.carrier = data.carrier or view.carrier

    async def on_delivered(self, session: AsyncSession, event: Envelope, data: DeliveryView) -> None:
        view = await self._started_view(session, data.order_id, data.merchant_id, data.store_id, data.customer_id)
        view.received_at = view.received_at or event.time
        view.carrier = data.carrier or view.carrier
        proof = {"kind": "carrier_report", "delivery_id": data.delivery_id, "carrier": data.carrier,
                 "waybill_id": data.waybill_id, "rider": data.rider, "at": event.time.isoformat(),
                 "event_id": str(event.id)}  # fmt: skip
        view.proofs = [*(view.proofs or []), proof]

    async def on_finish_code(self, session: AsyncSession, event: Envelope, data: RedeemedView) -> None:
        assert data.order_id is not None  # `_finish_code` lets only an order's finish code through
        view = await self._started_view(session, data.order_id, data.merchant_id, data.store_id or "", data.customer_id)
        view.received_at = view.received_at or event.time
        proof = {"kind": "handover", "code_id": data.code_id, "redemption_id": data.redemption_id,
                 "redeemed_by": data.redeemed_by, "device_id": data.device_id, "at": event.time.isoformat(),
                 "event_id": str(event.id)}  # fmt: skip
        view.proofs = [*(view.proofs or []), proof]

    async def on_not_delivered(self, session: AsyncSession, event: Envelope, data: DeliveryView) -> None:
        by = data.by if isinstance(data, DeliveryCancelledView) else None
        if not compensation.is_non_delivery(event.type, data.status, by):
            log.info("a delivery ended by our own decision: no compensation",
                     extra={"order_id": data.order_id, "status": data.status, "by": by})  # fmt: skip
            return
        view = await self._view(session, data.order_id)
        await compensation.open_non_delivery(
            session, self.cases, view, carrier=data.carrier, delivery_status=data.status, reason=data.reason
        )
