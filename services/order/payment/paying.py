"""Paying: the WeChat Pay prepay for an order, applying a successful transaction (from WeChat Pay's notification or
a query when it is late), and closing the trade of a cancelled order nobody paid.

A transaction is applied by a conditional UPDATE of the payment from `created` to `paid`; a replayed notification
finds it paid with the same transaction id and does nothing. A payment that arrives after the order was cancelled
(the customer paid a stale prepay) is kept and refunded in full.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.order import events, refunds, service
from services.order.domain import Action, OrderStatus
from services.order.errors import InvalidTransition, PaymentNotConfigured, PaymentProviderError, PaymentRejected
from services.order.models import CustomerOrder, Payment, Store
from services.order.payment.provider import PAYMENT_ACTOR
from services.order.payment.wechatpay import WechatPayClient
from services.order.schemas import PaymentRead
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Forbidden
from shared.timers import cancel_timer, schedule_timer


async def start_payment(
    session: AsyncSession,
    principal: Principal,
    order: CustomerOrder,
    client: WechatPayClient | None,
    clock: Clock,
) -> PaymentRead:
    """Creates (or reuses) the WeChat Pay prepay for the order. Safe to repeat: the provider returns the same
    prepay for the same out_trade_no and amount."""
    if principal.role is not Role.customer:
        raise Forbidden("Only the customer pays")
    if order.status != OrderStatus.pending_payment.value:
        raise InvalidTransition(f"Order {order.id} is {order.status}, not awaiting payment")
    if client is None:
        raise PaymentNotConfigured("Set ORDER_WECHATPAY_* (the launcher points them at the sandbox)")
    payment = await session.scalar(select(Payment).where(Payment.order_id == order.id).with_for_update())
    if payment is None:
        payment = Payment(
            order_id=order.id,
            out_trade_no=order.id,
            amount_fen=order.total_fen,
            payer_openid=principal.sub,
            status="created",
            created_at=clock.now(),
        )
        session.add(payment)
        await session.flush()
    store = await session.get_one(Store, order.store_id)
    prepay_id = await client.jsapi_prepay(
        out_trade_no=payment.out_trade_no,
        description=f"{store.name} 订单 {order.id}",
        amount_fen=payment.amount_fen,
        openid=payment.payer_openid,
    )
    payment.prepay_id = prepay_id
    await session.flush()
    return PaymentRead(
        order_id=order.id,
        out_trade_no=payment.out_trade_no,
        amount_fen=payment.amount_fen,
        status=payment.status,
        prepay_id=prepay_id,
        pay_params=client.client_pay_params(prepay_id),
    )


async def apply_transaction(
    session: AsyncSession,
    transaction: dict[str, Any],
    *,
    client: WechatPayClient,
    clock: Clock,
) -> str:
    """Applies a successful transaction (from a notification or a query). Returns the outcome."""
    out_trade_no = str(transaction.get("out_trade_no", ""))
    if transaction.get("trade_state") != "SUCCESS":
        return f"ignored:{transaction.get('trade_state')}"
    if transaction.get("mchid") != client.config.mchid or transaction.get("appid") != client.config.appid:
        raise PaymentRejected("The notification is for another merchant or app", reason="wrong-merchant")
    payment = await session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no).with_for_update())
    if payment is None:
        raise PaymentRejected(f"Unknown out_trade_no {out_trade_no}", reason="unknown-trade")
    total = (transaction.get("amount") or {}).get("total")
    if total != payment.amount_fen:
        raise PaymentRejected(
            f"Paid {total} fen for a {payment.amount_fen} fen order", reason="amount-mismatch", paid_fen=total
        )
    transaction_id = str(transaction.get("transaction_id") or "")
    if not transaction_id:
        raise PaymentRejected("The transaction has no transaction_id", reason="no-transaction-id")
    paid_at = _parse_time(transaction.get("success_time")) or clock.now()
    claimed = await session.scalar(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status == "created")
        .values(status="paid", transaction_id=transaction_id, paid_at=paid_at)
        .returning(Payment.id)
        .execution_options(synchronize_session=False)
    )
    if claimed is None:
        return "duplicate" if payment.transaction_id == transaction_id else "duplicate:other-transaction"
    order = await session.scalar(select(CustomerOrder).where(CustomerOrder.id == payment.order_id).with_for_update())
    assert order is not None
    if order.status != OrderStatus.pending_payment.value:
        # Paid after the order was cancelled (a stale prepay): the money goes back.
        await refunds.request_refund(
            session, clock, order, cause="late_payment", amount_fen=payment.amount_fen, reason="订单已取消,自动退款"
        )
        return "refunded:late-payment"
    await service.move(session, order, Action.pay, actor=PAYMENT_ACTOR, clock=clock, paid_at=paid_at)
    await cancel_timer(session, kind=service.UNPAID_TIMER, key=order.id, now=clock.now())
    await events.publish(session, clock, order, events.PAID, transaction_id=transaction_id)
    store = await session.get_one(Store, order.store_id)
    if store.auto_accept:
        await service.accept_order(session, order, actor="store:auto_accept", clock=clock)
    else:
        await schedule_timer(
            session,
            kind=service.ACCEPT_TIMER,
            key=order.id,
            due_at=clock.now() + timedelta(minutes=store.accept_limit_minutes),
        )
    return "applied"


async def close_trade(session: AsyncSession, order_id: str, client: WechatPayClient | None) -> None:
    """The `payment.close` timer: closes the prepay of a cancelled, unpaid order. If the customer paid just before,
    WeChat refuses (ORDERPAID) and the payment notification refunds it as a late payment."""
    payment = await session.scalar(select(Payment).where(Payment.order_id == order_id).with_for_update())
    if payment is None or payment.status != "created":
        return
    if client is None:
        raise PaymentNotConfigured("cannot close trades without WeChat Pay settings")
    try:
        await client.close(payment.out_trade_no)
    except PaymentProviderError as exc:
        if exc.extra.get("provider_code") in ("ORDERPAID", "ORDER_NOT_EXIST"):
            return
        raise
    payment.status = "closed"


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
