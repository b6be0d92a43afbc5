"""How the notify service learns what to tell whom, from other services' events.

Handlers run in the consumer's transaction next to the inbox row, so each event has one effect however often it is
delivered. For each event they:
- keep the service's view of the order (`order.*` events carry the whole order);
- append to the order's and the store's live streams (`streams`);
- hand the merchant's webhook endpoints a message (`webhooks.fan_out`), every consumed event type alike;
- record the customer's notice for the state it reaches (`courier.record_notice`; the courier sends it later,
  outside any transaction) and put it in the in-app inbox; a merchant's inbox gets what staff must act on.

Events of the other topics may come before the order's own (topics are not ordered with each other): such an
event starts the order's view from its own tenant facts (merchant, store, customer), and the order's events
complete it; the courier waits for them before sending (it needs the store's name and the customer's phone).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import courier, inbox, streams, webhooks
from services.notify.consumed import (
    CASE_EVENTS,
    CODE_EVENTS,
    DELIVERY_EVENTS,
    ORDER_EVENTS,
    CaseRefundedView,
    CaseRuledView,
    CaseView,
    CodeView,
    DeliveryCancelledView,
    DeliveryView,
    OrderEventView,
    OrderRefundedView,
    OrderRejectedView,
    RiderLocatedView,
    event_name,
)
from services.notify.models import OrderView
from services.notify.notices import (
    SELF_NOTIFYING_CARRIERS,
    NoticeKind,
    Occasion,
    pickup_number,
    wechat_time,
    yuan,
)
from services.notify.settings import NotifySettings
from shared.clock import Clock
from shared.events.contracts import EventHandler, handles
from shared.events.envelope import Envelope

TERMINAL_ORDER = frozenset({"completed", "cancelled", "refunded", "rejected"})
# The case states a customer is told of: the merchant's or the platform's decision, and the money.
CASE_DECISIONS = frozenset(
    {"aftersales.approved.v1", "aftersales.rejected.v1", "aftersales.negotiated.v1", "aftersales.ruled.v1",
     "aftersales.refunded.v1", "aftersales.compensation_granted.v1"}
)  # fmt: skip
# What staff must act on, in the merchant's inbox.
MERCHANT_INBOX = {
    "order.paid.v1": "新订单",
    "delivery.exception.v1": "配送异常",
    "delivery.cancelled.v1": "配送取消",
    "delivery.returned.v1": "配送退回",
    "aftersales.requested.v1": "新售后申请",
    "aftersales.escalated.v1": "售后已升级平台介入",
    "order.refund_failed.v1": "退款失败",
}


# A view started from another topic's event is older than any order event, which then replaces its facts.
PLACEHOLDER_TIME = datetime(2000, 1, 1, tzinfo=UTC)


# The statements every event runs, built once: building an upsert with its `excluded` columns cost about 1.5 ms of CPU
# a call, several times running it.
_ORDER_FACTS = ("merchant_id", "store_id", "store_name", "customer_id", "contact_phone", "fulfilment_mode", "status",
                "total_fen", "updated_at")  # fmt: skip
_order_facts = insert(OrderView).values(
    order_id=bindparam("order_id"), **{name: bindparam(name) for name in _ORDER_FACTS}
)
# The view as an order event tells it, locked by the upsert; a replay of an older event changes nothing (events of one
# order come in order on one partition), and returns no row.
_WRITE_ORDER_FACTS = _order_facts.on_conflict_do_update(
    index_elements=[OrderView.order_id],
    set_={name: _order_facts.excluded[name] for name in _ORDER_FACTS},
    where=OrderView.updated_at <= _order_facts.excluded.updated_at,
).returning(OrderView)
_started = insert(OrderView).values(
    order_id=bindparam("order_id"), merchant_id=bindparam("merchant_id"), store_id=bindparam("store_id"),
    store_name="", customer_id=bindparam("customer_id"), contact_phone="", fulfilment_mode="", status="", total_fen=0,
    updated_at=PLACEHOLDER_TIME,
)  # fmt: skip
# Started, or (a conflict's update that changes nothing) locked and read, in one statement.
_START_VIEW = _started.on_conflict_do_update(
    index_elements=[OrderView.order_id], set_={"order_id": _started.excluded.order_id}
).returning(OrderView)
_LOCK_VIEW = select(OrderView).where(OrderView.order_id == bindparam("order_id")).with_for_update()


class ViewNotReady(LookupError):
    """An event about an order the service has not heard of yet: retried."""


async def _of_an_order_or_a_webhook(connection: asyncpg.Connection, event: Envelope, data: CodeView) -> bool:
    """What `on_code` does anything with: an order code's redemption (its stream), or an event a webhook of the
    merchant wants. A voucher's redemption at a merchant without such a webhook is skipped before any transaction."""
    if data.order_id is not None and event.type == "code.redeemed.v1":
        return True
    return await webhooks.anyone_wants(connection, event, data.merchant_id)


class NotifyReactions:
    def __init__(self, settings: NotifySettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    def event_handlers(self) -> dict[str, EventHandler]:
        handlers: dict[str, EventHandler] = dict.fromkeys(ORDER_EVENTS, handles(OrderEventView, self.on_order))
        handlers["order.rejected.v1"] = handles(OrderRejectedView, self.on_order)
        handlers["order.refunded.v1"] = handles(OrderRefundedView, self.on_order)
        for event_type in DELIVERY_EVENTS:
            handlers[event_type] = handles(DeliveryView, self.on_delivery)
        handlers["delivery.cancelled.v1"] = handles(DeliveryCancelledView, self.on_delivery)
        handlers["delivery.location.v1"] = handles(RiderLocatedView, self.on_location)
        for event_type in CODE_EVENTS:
            handlers[event_type] = handles(CodeView, self.on_code, asks=_of_an_order_or_a_webhook)
        for event_type in CASE_EVENTS:
            handlers[event_type] = handles(CaseView, self.on_case)
        handlers["aftersales.ruled.v1"] = handles(CaseRuledView, self.on_case)
        handlers["aftersales.refunded.v1"] = handles(CaseRefundedView, self.on_case)
        return handlers

    # --- orders -----------------------------------------------------------------------------------------------

    async def on_order(self, session: AsyncSession, event: Envelope, data: OrderEventView) -> None:
        order = await session.scalar(
            _WRITE_ORDER_FACTS,
            {"order_id": data.order_id, "merchant_id": data.merchant_id, "store_id": data.store.id,
             "store_name": data.store.name, "customer_id": data.customer_id, "contact_phone": data.contact.phone,
             "fulfilment_mode": data.fulfilment_mode, "status": data.status, "total_fen": data.amounts.total_fen,
             "updated_at": event.time},
        ) or await self._view(session, data.order_id)  # fmt: skip
        name = event_name(event.type)
        await streams.append(
            session, order, event, "status",
            {"order_id": data.order_id, "event": name, "status": data.status, "at": event.time.isoformat()},
            terminal=data.status in TERMINAL_ORDER,
        )  # fmt: skip
        await self._merchant_inbox(session, order, event, data.order_id)
        await webhooks.fan_out(session, event, merchant_id=data.merchant_id, now=self.clock.now())
        occasion = self._order_occasion(event, data)
        if occasion is not None:
            await self._notice(session, order, event, occasion)

    def _order_occasion(self, event: Envelope, data: OrderEventView) -> Occasion | None:
        if event.type == "order.paid.v1":
            return Occasion(NoticeKind.paid, "paid", {"amount": yuan(data.amounts.total_fen)})
        if event.type == "order.accepted.v1":
            return Occasion(NoticeKind.accepted, "accepted", {})
        if isinstance(data, OrderRejectedView):
            return Occasion(NoticeKind.rejected, "rejected", {"remark": data.reason})
        if event.type == "order.ready.v1" and data.fulfilment_mode == "pickup":
            return Occasion(NoticeKind.ready_for_pickup, "ready_for_pickup",
                            {"pickup_no": pickup_number(data.order_id)})  # fmt: skip
        if isinstance(data, OrderRefundedView):
            return Occasion(NoticeKind.refunded, f"refunded:{data.refund.out_refund_no}",
                            {"amount": yuan(data.refund.amount_fen)})  # fmt: skip
        return None

    # --- deliveries -------------------------------------------------------------------------------------------

    async def on_delivery(self, session: AsyncSession, event: Envelope, data: DeliveryView) -> None:
        order = await self._view(session, data.order_id, data.merchant_id, data.store_id, data.customer_id)
        rider = data.rider or {}
        await streams.append(
            session, order, event, "delivery",
            {"order_id": data.order_id, "delivery_id": data.delivery_id, "event": event_name(event.type),
             "status": data.status, "carrier": data.carrier, "rider_name": rider.get("name"),
             "eta": data.eta.isoformat() if data.eta else None, "at": event.time.isoformat()},
        )  # fmt: skip
        await self._merchant_inbox(session, order, event, data.order_id)
        await webhooks.fan_out(session, event, merchant_id=data.merchant_id, now=self.clock.now())
        occasion = _delivery_occasion(event, data)
        if occasion is not None:
            notifies_itself = data.carrier if data.carrier in SELF_NOTIFYING_CARRIERS else None
            await self._notice(session, order, event, occasion, suppressed_by=notifies_itself)

    async def on_location(self, session: AsyncSession, event: Envelope, data: RiderLocatedView) -> None:
        """The rider's position and ETA, for the live streams only (no notice, no inbox item, no webhook)."""
        order = await self._view(session, data.order_id, data.merchant_id, data.store_id, data.customer_id)
        await streams.append(
            session, order, event, "position",
            {"order_id": data.order_id, "delivery_id": data.delivery_id, "lat": data.lat, "lng": data.lng,
             "located_at": data.located_at.isoformat(), "eta": data.eta.isoformat() if data.eta else None},
        )  # fmt: skip

    # --- codes ------------------------------------------------------------------------------------------------

    async def on_code(self, session: AsyncSession, event: Envelope, data: CodeView) -> None:
        await webhooks.fan_out(session, event, merchant_id=data.merchant_id, now=self.clock.now())
        if data.order_id is None or event.type != "code.redeemed.v1":
            return  # a voucher has no order to follow; issuing and reversing change no order's stream
        order = await self._view(session, data.order_id, data.merchant_id, data.store_id, data.customer_id)
        await streams.append(
            session, order, event, "code",
            {"order_id": data.order_id, "event": event_name(event.type), "kind": data.kind, "status": data.status,
             "at": event.time.isoformat()},
        )  # fmt: skip

    # --- after-sales ------------------------------------------------------------------------------------------

    async def on_case(self, session: AsyncSession, event: Envelope, data: CaseView) -> None:
        order = await self._view(session, data.order_id, data.merchant_id, data.store_id, data.customer_id)
        await streams.append(
            session, order, event, "aftersales",
            {"order_id": data.order_id, "case_id": data.case_id, "event": event_name(event.type), "state": data.state,
             "at": event.time.isoformat()},
        )  # fmt: skip
        await self._merchant_inbox(session, order, event, data.order_id, case_id=data.case_id)
        await webhooks.fan_out(session, event, merchant_id=data.merchant_id, now=self.clock.now())
        if event.type in CASE_DECISIONS:
            amount = data.agreed_fen
            if isinstance(data, CaseRefundedView):
                amount = data.refunded_fen
            elif isinstance(data, CaseRuledView):
                amount = data.amount_fen
            facts = {"case_no": data.case_id, "remark": _case_remark(event.type, data)}
            if amount is not None:
                facts["amount"] = yuan(amount)
            occasion = Occasion(
                NoticeKind.aftersales_decision, f"aftersales:{data.case_id}:{event_name(event.type)}", facts
            )
            await self._notice(session, order, event, occasion)

    # --- common -----------------------------------------------------------------------------------------------

    async def _view(
        self, session: AsyncSession, order_id: str, merchant_id: str | None = None, store_id: str | None = None,
        customer_id: str | None = None,
    ) -> OrderView:  # fmt: skip
        """The order's view, locked. An event of another topic may come before the order's own (they are not
        ordered across topics): its tenant facts start the view, which the order's events complete (a placeholder
        is older than any of them)."""
        view: OrderView | None
        if merchant_id is not None and store_id is not None and customer_id is not None:
            view = await session.scalar(
                _START_VIEW,
                {"order_id": order_id, "merchant_id": merchant_id, "store_id": store_id, "customer_id": customer_id},
            )
        else:
            view = await session.scalar(_LOCK_VIEW, {"order_id": order_id})
        if view is None:
            raise ViewNotReady(f"no order {order_id} in the view yet")
        return view

    async def _notice(
        self, session: AsyncSession, order: OrderView, event: Envelope, occasion: Occasion,
        suppressed_by: str | None = None,
    ) -> None:  # fmt: skip
        facts = await courier.record_notice(session, order, occasion, at=event.time, now=self.clock.now(),
                                              suppressed_by=suppressed_by)  # fmt: skip
        if facts is not None:
            await inbox.add(
                session, audience="customer", recipient=order.customer_id, store_id=order.store_id,
                order_id=order.order_id, kind=occasion.kind, dedupe_key=f"{order.order_id}:{occasion.key}",
                title=facts["status"], body=_inbox_body(facts), now=self.clock.now(),
            )  # fmt: skip

    async def _merchant_inbox(
        self, session: AsyncSession, order: OrderView, event: Envelope, order_id: str, case_id: str | None = None
    ) -> None:
        if event.type not in MERCHANT_INBOX:
            return
        title = MERCHANT_INBOX[event.type]
        body = f"订单 {order_id}" + (f" 售后 {case_id}" if case_id else "")
        await inbox.add(
            session, audience="merchant", recipient=order.merchant_id, store_id=order.store_id, order_id=order_id,
            kind=event_name(event.type), dedupe_key=str(event.id), title=title, body=body, now=self.clock.now(),
        )  # fmt: skip


def _delivery_occasion(event: Envelope, data: DeliveryView) -> Occasion | None:
    rider = data.rider or {}
    facts = {"rider_name": rider.get("name", ""), "rider_phone": rider.get("phone", "")}
    if data.eta is not None:
        facts["eta"] = wechat_time(data.eta)
    if event.type == "delivery.rider_assigned.v1":
        return Occasion(NoticeKind.rider_accepted, "rider_accepted", facts)
    if event.type in ("delivery.picked_up.v1", "delivery.delivering.v1"):
        return Occasion(NoticeKind.delivering, "delivering", facts)
    if event.type == "delivery.delivered.v1":
        return Occasion(NoticeKind.delivered, "delivered", facts)
    if event.type in ("delivery.exception.v1", "delivery.returned.v1"):
        return Occasion(NoticeKind.delivery_problem, "delivery_problem", facts | {"remark": data.reason or ""})
    if isinstance(data, DeliveryCancelledView) and (data.status == "failed" or not data.by):
        # The carrier gave up, or nobody took it: the customer must hear of it. A cancellation carrying `by` was
        # our own decision (the merchant or the order), which the order's own notices tell.
        return Occasion(NoticeKind.delivery_problem, "delivery_problem", facts | {"remark": data.reason or ""})
    return None


def _case_remark(event_type: str, data: CaseView) -> str:
    return {
        "aftersales.approved.v1": "商家已同意售后申请",
        "aftersales.rejected.v1": "商家已拒绝售后申请",
        "aftersales.negotiated.v1": "商家提出协商方案",
        "aftersales.ruled.v1": "平台已裁决",
        "aftersales.refunded.v1": "售后退款已到账",
        "aftersales.compensation_granted.v1": "平台已发放赔付",
    }.get(event_type, data.state)


def _inbox_body(facts: dict[str, str]) -> str:
    parts = [f"订单 {facts['order_no']}", facts["store_name"]]
    for key in ("amount", "rider_name", "pickup_no", "remark"):
        if facts.get(key):
            parts.append(facts[key])
    return " · ".join(parts)
