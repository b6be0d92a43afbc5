"""The WeChat Pay notification endpoint (public at the gateway; authenticated by the platform's signature).

Every notification is recorded. It is applied in a savepoint, so a refused one (bad signature, unknown trade, wrong
amount, a body over `notification_max_body_bytes`) leaves only its record, trimmed to a digest and prefix; the answer
follows WeChat Pay v3: 204 and no body when handled (or already handled), 4xx with `{"code": "FAIL", "message": ...}`
when refused, which makes WeChat retry.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.order import notifications, payments
from services.order.errors import PaymentRejected
from services.order.payment.wechatpay import WechatPayClient
from services.order.settings import OrderSettings
from shared.clock import Clock
from shared.db import DbSession
from shared.errors import Refused
from shared.http import bounded_body

log = logging.getLogger(__name__)

router = APIRouter(tags=["payments"])


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
    client: WechatPayClient | None = request.app.state.payment_client
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
