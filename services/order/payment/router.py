"""Payment's routes: paying an order (the WeChat Pay prepay, and asking WeChat Pay when its notification is late),
an order's refunds, and the WeChat Pay notification endpoint (public at the gateway; authenticated by the
platform's signature).

Every notification is recorded. It is applied in a savepoint, so a refused one (bad signature, unknown trade, wrong
amount, a body over `notification_max_body_bytes`) leaves only its record, trimmed to a digest and prefix; the answer
follows WeChat Pay v3: 204 and no body when handled (or already handled), 4xx with `{"code": "FAIL", "message": ...}`
when refused, which makes WeChat retry.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.order import refunds, service
from services.order.errors import PaymentNotConfigured, PaymentRejected
from services.order.payment import notifications, paying, refunding
from services.order.payment.wechatpay import WechatPayClient
from services.order.router import OrderCaller
from services.order.schemas import OrderRead, PaymentRead, RefundRead
from services.order.settings import OrderSettings
from shared.clock import AppClock, Clock
from shared.db import DbSession
from shared.errors import Refused
from shared.http import bounded_body

log = logging.getLogger(__name__)

router = APIRouter(tags=["payments"])


def _payment_client(request: Request) -> WechatPayClient | None:
    client: WechatPayClient | None = request.app.state.payment_client
    return client


@router.post(
    "/v1/orders/{order_id}/payment",
    summary="Start paying: the WeChat Pay prepay and the parameters for wx.requestPayment",
)
async def start_payment(
    request: Request, session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str
) -> PaymentRead:
    order = await service.visible_order(session, principal, order_id, lock=True)
    return await paying.start_payment(session, principal, order, _payment_client(request), clock)


@router.post(
    "/v1/orders/{order_id}/payment/query",
    summary="Ask WeChat Pay about the order's payment now (when the notification is late) and apply it",
)
async def query_payment(
    request: Request, session: DbSession, clock: AppClock, principal: OrderCaller, order_id: str
) -> OrderRead:
    order = await service.visible_order(session, principal, order_id)
    client = _payment_client(request)
    if client is None:
        raise PaymentNotConfigured("Set ORDER_WECHATPAY_*")
    transaction = await client.query(order.id)
    await paying.apply_transaction(session, transaction, client=client, clock=clock)
    await session.refresh(order)
    return await service.order_read(session, principal, order)


@router.get("/v1/orders/{order_id}/refunds", summary="The order's refunds and their state")
async def list_refunds(session: DbSession, principal: OrderCaller, order_id: str) -> list[RefundRead]:
    order = await service.visible_order(session, principal, order_id)
    return [RefundRead.model_validate(r) for r in await refunds.refunds_of(session, order.id)]


@router.post(
    "/v1/payments/wechatpay/callback",
    summary="WeChat Pay notifications (TRANSACTION.SUCCESS, REFUND.*); signed by the platform key, no JWT",
    responses={
        204: {"description": "Handled"},
        400: {"description": "Refused; WeChat retries"},
        413: {"description": "Body too large"},
    },
)
async def wechatpay_callback(request: Request, session: DbSession) -> Response:
    client = _payment_client(request)
    if client is None:
        return JSONResponse({"code": "FAIL", "message": "payment not configured"}, status_code=503)
    clock: Clock = request.app.state.clock
    settings: OrderSettings = request.app.state.settings
    raw, complete = await bounded_body(request, settings.notification_max_body_bytes)
    body = raw.decode("utf-8", errors="replace")
    headers = {k: v for k, v in request.headers.items() if k.lower().startswith("wechatpay-")}
    record = notifications.record(headers, raw, clock.now())
    try:
        async with session.begin_nested():
            if not complete:
                raise PaymentRejected("The notification body is too large", reason="too-large")
            notification = client.parse_notification(dict(request.headers), body)
            record.notification_id, record.event_type = notification.id, notification.event_type
            if notification.event_type == "TRANSACTION.SUCCESS":
                record.outcome = await paying.apply_transaction(
                    session,
                    notification.resource,
                    client=client,
                    clock=clock,
                )
            elif notification.event_type.startswith("REFUND."):
                record.outcome = await refunding.apply_refund(session, notification, clock)
            else:
                record.outcome = f"ignored:{notification.event_type}"
    except PaymentRejected as refusal:
        record.outcome = f"rejected:{refusal.extra.get('reason') or refusal.detail}"[:200]
        notifications.keep_refused(record, settings)
        await notifications.arm_pruning(session, settings, clock.now())
        log.warning("payment notification refused", extra={"reason": refusal.detail, "id": record.notification_id})
        # The record commits with the session; WeChat Pay's own answer format, which makes it retry.
        session.add(record)
        failure = {"code": "FAIL", "message": refusal.detail}
        raise Refused(JSONResponse(failure, status_code=400 if complete else 413)) from refusal
    session.add(record)
    return Response(status_code=204)
