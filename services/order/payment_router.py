"""The WeChat Pay notification endpoint (public at the gateway; authenticated by the platform's signature).

Every notification is stored as received. It is applied in a savepoint, so a refused one (bad signature, unknown
trade, wrong amount) leaves only its record; the answer follows WeChat Pay v3: 204 and no body when handled (or
already handled), 4xx with `{"code": "FAIL", "message": ...}` when refused, which makes WeChat retry.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.order import payments
from services.order.errors import PaymentRejected
from services.order.models import PaymentNotification
from services.order.payment.wechatpay import WechatPayClient
from shared.clock import Clock

log = logging.getLogger(__name__)

router = APIRouter(tags=["payments"])


@router.post(
    "/v1/payments/wechatpay/callback",
    summary="WeChat Pay notifications (TRANSACTION.SUCCESS, REFUND.*); signed by the platform key, no JWT",
    responses={204: {"description": "Handled"}, 400: {"description": "Refused; WeChat retries"}},
)
async def wechatpay_callback(request: Request) -> Response:
    client: WechatPayClient | None = request.app.state.payment_client
    if client is None:
        return JSONResponse({"code": "FAIL", "message": "payment not configured"}, status_code=503)
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    clock: Clock = request.app.state.clock
    body = (await request.body()).decode("utf-8", errors="replace")
    headers = {k: v for k, v in request.headers.items() if k.lower().startswith("wechatpay-")}
    record = PaymentNotification(headers=headers, body=body, received_at=clock.now(), outcome="rejected")
    refusal: PaymentRejected | None = None
    async with sessionmaker() as session, session.begin():
        try:
            async with session.begin_nested():
                notification = client.parse_notification(dict(request.headers), body)
                record.notification_id, record.event_type = notification.id, notification.event_type
                if notification.event_type == "TRANSACTION.SUCCESS":
                    record.outcome = await payments.apply_transaction(
                        session,
                        notification.resource,
                        client=client,
                        clock=clock,
                    )
                elif notification.event_type.startswith("REFUND."):
                    record.outcome = await payments.apply_refund(session, notification, clock)
                else:
                    record.outcome = f"ignored:{notification.event_type}"
        except PaymentRejected as exc:
            refusal = exc
            record.outcome = f"rejected:{exc.extra.get('reason') or exc.detail}"[:200]
        session.add(record)
    if refusal is not None:
        log.warning("payment notification refused", extra={"reason": refusal.detail, "id": record.notification_id})
        return JSONResponse({"code": "FAIL", "message": refusal.detail}, status_code=400)
    return Response(status_code=204)
