"""How the order service reacts to other services' events and to its own deadlines.

Event handlers run in the consumer's transaction next to the inbox row, so each event has one effect however often
it is delivered. A move the transition table refuses (a late `delivery.delivered` for a cancelled order, a replay
that would go backwards) is recorded in the log and skipped: nothing leaves a terminal state.

Events consumed (subject = order id):
- `delivery.created/picked_up/delivering/delivered/cancelled/returned.v1` move the order;
  `delivery.rider_assigned/rider_at_store/exception.v1` update what the order shows of its delivery;
- `code.redeemed.v1` with `kind` `pickup` completes a self-pickup order (the redemption service issues a pickup
  code only once the order is accepted, so none can meet an order still waiting for acceptance), `finish` proves a
  delivery and completes it, but only once the rider picked it up (`in_delivery` or `delivered`): a finish code
  never moves an order straight from `accepted`. One that arrives before dispatch's `picked_up` (another topic) is
  kept on the order, which completes when its delivery is delivered. `code.reversed.v1` of a pickup code reopens
  the order; a redemption the order cannot take is logged as an error with the order and code, never dropped
  unseen. Vouchers' redemptions and reversals are no order's: the consumer skips them (`concerns`);
- `aftersales.requested.v1` opens a hold (blocks express shipping), `aftersales.closed/cancelled/refunded.v1` close
  it; `aftersales.refund_requested.v1` (`case_id`, `attempt`, `amount_fen`, `type`) refunds, once per case and
  attempt (cause `aftersales:<case>[#attempt]`), capped at what is left of the order; a `cancel_request` case's
  refund cancels the order (if it was not picked up yet) and refunds it whole under the same cause. The outcome goes
  back as `order.refunded.v1` or `order.refund_failed.v1` with that cause. (An approval no longer refunds by
  itself: a return is refunded on receipt, so only the after-sales service knows when the money is due.)

Each handler reads its event through its view (services/order/consumed.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.order import events, refunds, service
from services.order.consumed import (
    AftersalesCaseView,
    CodeRedeemedView,
    CodeReversedView,
    DeliveryView,
    RefundRequestedView,
)
from services.order.domain import TERMINAL, Action, OrderStatus
from services.order.errors import InvalidTransition
from services.order.models import AftersalesHold, CustomerOrder, Refund
from services.order.payment import notifications, paying, refunding
from services.order.payment.wechatpay import WechatPayClient
from services.order.settings import OrderSettings
from shared.clock import Clock
from shared.events.consumer import EventHandler
from shared.events.contracts import handles
from shared.events.envelope import Envelope
from shared.events.models import Timer
from shared.timers import TimerHandler, schedule_timer

log = logging.getLogger(__name__)

DELIVERY_MOVES = {
    "delivery.created.v1": Action.delivery_created,
    "delivery.picked_up.v1": Action.delivery_picked_up,
    "delivery.delivering.v1": Action.delivery_picked_up,
    "delivery.delivered.v1": Action.delivery_delivered,
    "delivery.cancelled.v1": Action.delivery_ended,
    "delivery.returned.v1": Action.delivery_ended,
}
DELIVERY_FACTS = ("delivery.rider_assigned.v1", "delivery.rider_at_store.v1", "delivery.exception.v1")
# A delivery order not yet picked up, as far as the order service has heard.
BEFORE_PICKUP = (OrderStatus.accepted.value, OrderStatus.ready.value, OrderStatus.dispatching.value)
HOLD_CLOSERS = ("aftersales.closed.v1", "aftersales.cancelled.v1", "aftersales.refunded.v1")
# How an after-sales cancel request cancels the order, by where the order is (after pickup it cannot).
CANCEL_ON_REQUEST = {
    OrderStatus.paid.value: Action.customer_cancel,
    **dict.fromkeys(
        (OrderStatus.accepted.value, OrderStatus.ready.value, OrderStatus.ready_for_pickup.value,
         OrderStatus.dispatching.value),
        Action.merchant_cancel,
    ),
}  # fmt: skip


def _of_an_order_code(data: CodeRedeemedView) -> bool:
    """A redemption of an order's pickup or finish code; a voucher's is none of the order service's business."""
    return bool(data.order_id) and data.kind in ("pickup", "finish")


def _of_a_pickup_code(data: CodeReversedView) -> bool:
    return bool(data.order_id) and data.kind == "pickup"


class OrderReactions:
    def __init__(self, *, settings: OrderSettings, clock: Clock, payment_client: WechatPayClient | None) -> None:
        self.settings = settings
        self.clock = clock
        self.payment_client = payment_client

    def event_handlers(self) -> dict[str, EventHandler]:
        handlers: dict[str, EventHandler] = {}
        for event_type in (*DELIVERY_MOVES, *DELIVERY_FACTS):
            handlers[event_type] = handles(DeliveryView, self.on_delivery_event)
        handlers["code.redeemed.v1"] = handles(CodeRedeemedView, self.on_code_redeemed, concerns=_of_an_order_code)
        handlers["code.reversed.v1"] = handles(CodeReversedView, self.on_code_reversed, concerns=_of_a_pickup_code)
        handlers["aftersales.requested.v1"] = handles(AftersalesCaseView, self.on_aftersales_requested)
        for event_type in HOLD_CLOSERS:
            handlers[event_type] = handles(AftersalesCaseView, self.on_aftersales_closed)
        handlers["aftersales.refund_requested.v1"] = handles(RefundRequestedView, self.on_aftersales_refund_requested)
        return handlers

    def timer_handlers(self) -> dict[str, TimerHandler]:
        return {
            service.UNPAID_TIMER: self.on_unpaid_deadline,
            service.ACCEPT_TIMER: self.on_accept_deadline,
            service.AUTO_COMPLETE_TIMER: self.on_auto_complete,
            refunds.SUBMIT_TIMER: self.on_refund_submit,
            service.CLOSE_TRADE_TIMER: self.on_close_trade,
            notifications.PRUNE_TIMER: self.on_notification_prune,
        }

    async def on_notification_prune(self, session: AsyncSession, timer: Timer) -> None:
        await notifications.prune(session, self.settings, self.clock.now())

    async def _order(self, session: AsyncSession, order_id: str) -> CustomerOrder | None:
        order = await session.scalar(service.LOCK_ORDER, {"order_id": order_id})
        if order is None:
            log.warning("event for an unknown order", extra={"order_id": order_id})
        return order

    async def _try(
        self,
        session: AsyncSession,
        order: CustomerOrder,
        action: Action,
        actor: str,
        delivery: dict[str, Any] | None = None,
        **values: Any,
    ) -> bool:
        """Moves the order, writing `values` with the move; `delivery` (what the order shows of its delivery) is
        written with the move too, or on its own (at the commit) when the order does not move."""
        shown = {} if delivery is None else {"delivery": delivery}
        try:
            await service.move(session, order, action, actor=actor, clock=self.clock, **values, **shown)
        except InvalidTransition:
            log.info(
                "event does not move the order",
                extra={"order_id": order.id, "action": action.value, "status": order.status},
            )
            if delivery is not None:
                order.delivery = delivery
            return False
        return True

    # --- dispatch ---------------------------------------------------------------------------------------------

    async def on_delivery_event(self, session: AsyncSession, event: Envelope, data: DeliveryView) -> None:
        order = await self._order(session, event.subject)
        if order is None:
            return
        facts = {
            "delivery_id": data.delivery_id,
            "carrier": data.carrier,
            "status": data.status or event.type.split(".")[1],
            "rider": data.rider,
            "reason": data.reason,
            "eta": data.eta,
            "updated_at": event.time.isoformat(),
        }
        # What the order shows of its delivery, written with the move when the event moves the order (one UPDATE),
        # else on its own; nothing once the order is over.
        delivery = None
        if OrderStatus(order.status) not in TERMINAL:
            delivery = {**(order.delivery or {}), **{k: v for k, v in facts.items() if v is not None}}
        action = DELIVERY_MOVES.get(event.type)
        if action is None or (action is Action.delivery_picked_up and order.status == OrderStatus.in_delivery.value):
            # No move (delivering after picked_up is nothing new either): the facts alone.
            if delivery is not None:
                order.delivery = delivery
            await session.flush()
            return
        actor = f"dispatch:{data.carrier or 'unknown'}"
        if action is Action.delivery_delivered:
            if not await self._try(session, order, action, actor, delivery, delivered_at=self.clock.now()):
                return
            finish_code = (order.delivery or {}).get("finish_code_id")
            if finish_code is not None:  # redeemed at the door before we heard of the pickup
                await service.complete_order(
                    session, order, Action.finish_redeemed, actor=f"redemption:{finish_code}", clock=self.clock
                )
            else:
                await schedule_timer(
                    session,
                    kind=service.AUTO_COMPLETE_TIMER,
                    key=order.id,
                    due_at=self.clock.now() + timedelta(hours=self.settings.auto_complete_hours),
                )
            return
        await self._try(session, order, action, actor, delivery)

    # --- redemption -------------------------------------------------------------------------------------------

    async def on_code_redeemed(self, session: AsyncSession, event: Envelope, data: CodeRedeemedView) -> None:
        order = await self._order(session, data.order_id or event.subject)
        if order is None:
            return
        kind = data.kind
        actor = f"redemption:{data.code_id}"
        if kind == "pickup" and order.status in (OrderStatus.ready_for_pickup.value, OrderStatus.accepted.value):
            await service.complete_order(session, order, Action.pickup_redeemed, actor=actor, clock=self.clock)
        elif kind == "finish" and order.status in (OrderStatus.in_delivery.value, OrderStatus.delivered.value):
            if order.status == OrderStatus.in_delivery.value:
                await service.move(
                    session, order, Action.delivery_delivered, actor=actor, clock=self.clock,
                    delivered_at=self.clock.now(),
                )  # fmt: skip
            await service.complete_order(session, order, Action.finish_redeemed, actor=actor, clock=self.clock)
        elif kind == "finish" and order.status in BEFORE_PICKUP:
            order.delivery = {**(order.delivery or {}), "finish_code_id": data.code_id}
            await session.flush()
        elif order.status != OrderStatus.completed.value:
            log.error(
                "a redemption the order cannot take",
                extra={"order_id": order.id, "status": order.status, "kind": kind, "code": data.code_id},
            )

    async def on_code_reversed(self, session: AsyncSession, event: Envelope, data: CodeReversedView) -> None:
        order = await self._order(session, data.order_id or event.subject)
        if order is None:
            return
        if await self._try(session, order, Action.pickup_reversed, "redemption:reversal", completed_at=None):
            await events.publish(session, self.clock, order, events.REOPENED, reason="pickup code reversed")

    # --- after-sales ------------------------------------------------------------------------------------------

    async def on_aftersales_requested(self, session: AsyncSession, event: Envelope, data: AftersalesCaseView) -> None:
        order = await self._order(session, data.order_id or event.subject)
        if order is None:
            return
        opened = await session.scalar(
            insert(AftersalesHold)
            .values(case_id=data.case_id, order_id=order.id, opened_at=event.time)
            .on_conflict_do_nothing()
            .returning(AftersalesHold.case_id)
        )
        if opened is not None:
            order.open_aftersales += 1
            await session.flush()

    async def on_aftersales_closed(self, session: AsyncSession, event: Envelope, data: AftersalesCaseView) -> None:
        closed = await session.scalar(
            update(AftersalesHold)
            .where(AftersalesHold.case_id == data.case_id, AftersalesHold.closed_at.is_(None))
            .values(closed_at=event.time)
            .returning(AftersalesHold.order_id)
        )
        if closed is not None:
            await session.execute(
                update(CustomerOrder)
                .where(CustomerOrder.id == closed, CustomerOrder.open_aftersales > 0)
                .values(open_aftersales=CustomerOrder.open_aftersales - 1)
            )

    async def on_aftersales_refund_requested(
        self, session: AsyncSession, event: Envelope, data: RefundRequestedView
    ) -> None:
        order = await self._order(session, data.order_id or event.subject)
        if order is None:
            return
        case_id = data.case_id
        cause = refunds.aftersales_cause(case_id, data.attempt)
        amount, reason = data.amount_fen, data.reason or cause
        if await session.scalar(select(Refund.id).where(Refund.order_id == order.id, Refund.cause == cause)):
            return  # this case's attempt was staged already (a replay under a new event id)
        if data.type == "cancel_request":
            action = CANCEL_ON_REQUEST.get(order.status)
            if action is None:
                await refunds.publish_not_refunded(
                    session, self.clock, order, cause=cause, amount_fen=0,
                    error=f"the order is {order.status}: too late to cancel",
                )  # fmt: skip
                return
            await service.end_order(session, order, action, actor=f"aftersales:{case_id}", reason=reason,
                                    clock=self.clock, refund_cause=cause)  # fmt: skip
            return
        if await refunds.request_refund(session, self.clock, order, cause=cause, amount_fen=amount, reason=reason):
            return
        await refunds.publish_not_refunded(
            session, self.clock, order, cause=cause, amount_fen=0, error="nothing is left to refund"
        )

    # --- deadlines --------------------------------------------------------------------------------------------

    async def on_unpaid_deadline(self, session: AsyncSession, timer: Timer) -> None:
        order = await self._order(session, timer.key)
        if order is not None and order.status == OrderStatus.pending_payment.value:
            await service.end_order(
                session, order, Action.expire_unpaid, actor="timer", reason="unpaid", clock=self.clock
            )

    async def on_accept_deadline(self, session: AsyncSession, timer: Timer) -> None:
        order = await self._order(session, timer.key)
        if order is not None and order.status == OrderStatus.paid.value:
            await service.end_order(
                session, order, Action.accept_timeout, actor="timer", reason="not accepted in time", clock=self.clock
            )

    async def on_auto_complete(self, session: AsyncSession, timer: Timer) -> None:
        order = await self._order(session, timer.key)
        if order is not None and order.status in (OrderStatus.delivered.value, OrderStatus.shipped.value):
            await service.complete_order(session, order, Action.auto_complete, actor="timer", clock=self.clock)

    async def on_refund_submit(self, session: AsyncSession, timer: Timer) -> None:
        await refunding.submit_refund(session, timer.key, self.payment_client, self.clock)

    async def on_close_trade(self, session: AsyncSession, timer: Timer) -> None:
        await paying.close_trade(session, timer.key, self.payment_client)
