"""Refunding at WeChat Pay: a staged refund request (services/order/payment/refunds.py) is submitted by
the `refund.submit` timer (raising makes it retry; an answer retrying cannot fix marks it failed), and settled by
WeChat Pay's REFUND.* notification: the refunded amount moves the order (partly or fully refunded) and
`order.refunded.v1` is published, or the failure is published as `order.refund_failed.v1`.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.order import events, refunds, service
from services.order.domain import OrderStatus, refund_action
from services.order.errors import PaymentNotConfigured, PaymentProviderError, PaymentRejected
from services.order.models import CustomerOrder, Payment, Refund
from services.order.payment.provider import PAYMENT_ACTOR
from services.order.payment.wechatpay import Notification, WechatPayClient
from shared.clock import Clock

# Provider answers that retrying cannot fix: the refund is marked failed for ops to look at.
FINAL_REFUND_ERRORS = {"PARAM_ERROR", "NOT_ENOUGH", "TRADE_STATE_ERROR", "RESOURCE_NOT_EXISTS", "INVALID_REQUEST"}


async def submit_refund(
    session: AsyncSession, out_refund_no: str, client: WechatPayClient | None, clock: Clock
) -> None:
    """The `refund.submit` timer: sends a pending refund to the provider; raising makes the timer retry. A refund
    that cannot be made is marked failed and published as such."""
    refund = await session.scalar(select(Refund).where(Refund.out_refund_no == out_refund_no).with_for_update())
    if refund is None or refund.status != "pending":
        return
    if client is None:
        raise PaymentNotConfigured("cannot submit refunds without WeChat Pay settings")
    payment = await session.scalar(select(Payment).where(Payment.order_id == refund.order_id))
    if payment is None or payment.status != "paid":
        refund.status, refund.last_error = "failed", "the order has no settled payment"
        await refunds.publish_failed(session, clock, refund)
        return
    refund.attempts += 1
    try:
        answer = await client.refund(
            out_trade_no=payment.out_trade_no,
            out_refund_no=refund.out_refund_no,
            amount_fen=refund.amount_fen,
            total_fen=payment.amount_fen,
            reason=refund.reason,
        )
    except PaymentProviderError as exc:
        if exc.extra.get("provider_code") in FINAL_REFUND_ERRORS:
            refund.status, refund.last_error = "failed", exc.detail
            await refunds.publish_failed(session, clock, refund)
            return
        raise
    refund.status, refund.refund_id = "processing", answer.get("refund_id")


async def apply_refund(session: AsyncSession, notification: Notification, clock: Clock) -> str:
    resource = notification.resource
    out_refund_no = str(resource.get("out_refund_no", ""))
    refund = await session.scalar(select(Refund).where(Refund.out_refund_no == out_refund_no).with_for_update())
    if refund is None:
        raise PaymentRejected(f"Unknown out_refund_no {out_refund_no}", reason="unknown-refund")
    amount = (resource.get("amount") or {}).get("refund")
    if amount != refund.amount_fen:
        raise PaymentRejected(f"Refunded {amount} fen for a {refund.amount_fen} fen refund", reason="amount-mismatch")
    if notification.event_type != "REFUND.SUCCESS":
        if refund.status in ("succeeded", "failed"):
            return "duplicate"
        refund.status, refund.last_error = "failed", f"{notification.event_type}: {resource.get('refund_status')}"
        await refunds.publish_failed(session, clock, refund)
        return "refund-failed"
    settled = await session.scalar(
        update(Refund)
        .where(Refund.id == refund.id, Refund.status.in_(("pending", "processing")))
        .values(status="succeeded", refund_id=resource.get("refund_id"), settled_at=clock.now())
        .returning(Refund.id)
        .execution_options(synchronize_session=False)
    )
    if settled is None:
        return "duplicate"
    order = await session.scalar(select(CustomerOrder).where(CustomerOrder.id == refund.order_id).with_for_update())
    assert order is not None
    refunded = order.refunded_fen + refund.amount_fen
    action = refund_action(OrderStatus(order.status), refunded, order.total_fen)
    if action is None:
        order.refunded_fen, order.updated_at = refunded, clock.now()
        await session.flush()
    else:
        await service.move(session, order, action, actor=PAYMENT_ACTOR, clock=clock, refunded_fen=refunded)
    await events.publish(
        session,
        clock,
        order,
        events.REFUNDED,
        refund={"out_refund_no": refund.out_refund_no, "cause": refund.cause, "amount_fen": refund.amount_fen},
    )
    return "applied"
